"""Ranking: the features of (person, candidate) pairs, the active re-ranker that scores them, the
documented blend when none is active, and the re-ranker's training.

May import: retrieval, vectors, ml, the models, core.
"""
