"""Serving: the three entry points (service.py), the business rules, the reasons, the precomputed
lists and feedback on what was shown. The API, the pages and the evaluation call service.py.

May import: ranking, retrieval, vectors, ml, the models, core.
"""
