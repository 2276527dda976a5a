"""Offline evaluation through the serving path: the split, the metrics, isolated databases, the
protocols (one runner, P1, P2 and P3 as three descriptions of it) and their report.

May import: serving and everything below it, the bundle format.
"""
