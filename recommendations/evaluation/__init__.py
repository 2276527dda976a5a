"""Offline evaluation through the serving path: the split, the metrics, isolated databases, the
protocols (P1, P2, P3) and their report.

May import: serving and everything below it, the bundle format.
"""
