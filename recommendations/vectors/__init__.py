"""Writing vectors: item and activity text encoded on arrival, and each person's interest vectors.

May import: ml, the models of catalog, users and recommendations, core.
"""
