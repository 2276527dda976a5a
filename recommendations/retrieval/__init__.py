"""Retrieval: what a request allows (filters), the person's state, the candidate sources
(semantic, behaviour, popular, fresh) and the behaviour model they read, with its build.

May import: vectors, ml, the models of catalog, users and recommendations, core.
"""
