"""Item-to-item models learned from interactions. Arrays in, sparse neighbour lists out.

Two algorithms behind one result (for each item, its top-K neighbours with weights):
- EASE (Steck 2019): a closed-form linear item-item model, the strongest simple collaborative
  filter on MovieLens-sized data, but it inverts a dense items x items matrix: O(items^3) time
  and items^2 memory, so it is used only up to EASE_MAX_ITEMS items.
- item-kNN with cosine similarity on the sparse interaction matrix: scales to millions of items
  (sparse products, top-K kept per item).
Scores at request time are sum over the person's items of neighbour weights: the same formula
for both, so the database can compute it (recommendations.retrieval.behaviour.behaviour_scores).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse

logger = logging.getLogger(__name__)

# Dense EASE needs items^2 * 8 bytes twice (Gram matrix and inverse): 20,000 items is 6.4 GB.
EASE_MAX_ITEMS = 20_000


@dataclass(frozen=True)
class Neighbours:
    algorithm: str
    item_ids: np.ndarray  # (n,) item id of each row / column of the model
    matrix: sparse.csr_matrix  # (n, n) row i: weights of i's top-K neighbours


def interaction_matrix(user_index: np.ndarray, item_index: np.ndarray, n_users: int, n_items: int) -> sparse.csr_matrix:
    """Binary users x items matrix: every interaction counts as a positive, once."""
    data = np.ones(len(user_index), dtype=np.float32)
    matrix = sparse.csr_matrix((data, (user_index, item_index)), shape=(n_users, n_items))
    matrix.data[:] = 1.0
    return matrix


def _top_k_rows(dense_rows: np.ndarray, k: int, row_offset: int, n_items: int):
    """Indices and values of the k largest positive entries per row."""
    rows, cols, values = [], [], []
    k = min(k, dense_rows.shape[1] - 1)
    top = np.argpartition(-dense_rows, k, axis=1)[:, :k]
    for local_row, candidates in enumerate(top):
        weights = dense_rows[local_row, candidates]
        keep = weights > 0
        rows.append(np.full(keep.sum(), row_offset + local_row))
        cols.append(candidates[keep])
        values.append(weights[keep])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(values)


def ease_weights(interactions: sparse.csr_matrix, *, regularisation: float) -> np.ndarray:
    """All EASE weights, dense float64 (row i = weights of items recommended by having i).

    The one definition: the product keeps the top-k of each row (ease below), the evaluation's
    protocol check uses them all (recommendations.evaluation.baselines). The product's limit,
    EASE_MAX_ITEMS, is checked by ease: the protocol check has always run without it."""
    n_items = interactions.shape[1]
    gram = (interactions.T @ interactions).toarray().astype(np.float64)
    gram[np.diag_indices(n_items)] += regularisation
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[None, :]
    weights[np.diag_indices(n_items)] = 0.0
    return weights


def ease(interactions: sparse.csr_matrix, *, regularisation: float, k: int) -> sparse.csr_matrix:
    """EASE weights, top-k per item (row i = weights of items recommended by having i)."""
    n_items = interactions.shape[1]
    if n_items > EASE_MAX_ITEMS:
        raise ValueError(f"EASE is limited to {EASE_MAX_ITEMS} items; use item-kNN for {n_items}")
    weights = ease_weights(interactions, regularisation=regularisation)
    rows, cols, values = _top_k_rows(weights.astype(np.float32), k, 0, n_items)
    return sparse.csr_matrix((values, (rows, cols)), shape=(n_items, n_items))


def item_knn(interactions: sparse.csr_matrix, *, k: int, block: int = 2_048) -> sparse.csr_matrix:
    """Cosine similarity between item columns, top-k per item, computed a block of rows at a time."""
    n_items = interactions.shape[1]
    columns = interactions.T.tocsr().astype(np.float32)
    norms = np.sqrt(np.asarray(columns.multiply(columns).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    normalised = sparse.diags(1.0 / norms) @ columns
    all_rows, all_cols, all_values = [], [], []
    for start in range(0, n_items, block):
        similarity = (normalised[start : start + block] @ normalised.T).toarray()
        for local in range(similarity.shape[0]):
            similarity[local, start + local] = 0.0
        rows, cols, values = _top_k_rows(similarity, k, start, n_items)
        all_rows.append(rows)
        all_cols.append(cols)
        all_values.append(values)
    return sparse.csr_matrix(
        (np.concatenate(all_values), (np.concatenate(all_rows), np.concatenate(all_cols))), shape=(n_items, n_items)
    )


def neighbours_build(
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    *,
    k: int,
    ease_regularisation: float,
    algorithm: str = "auto",
) -> Neighbours:
    """Top-k neighbours per item from (user, item) interaction pairs."""
    started = time.monotonic()
    users, user_index = np.unique(user_ids, return_inverse=True)
    items, item_index = np.unique(item_ids, return_inverse=True)
    interactions = interaction_matrix(user_index, item_index, len(users), len(items))
    if algorithm == "auto":
        algorithm = "ease" if len(items) <= EASE_MAX_ITEMS else "item_knn"
    if algorithm == "ease":
        matrix = ease(interactions, regularisation=ease_regularisation, k=k)
    elif algorithm == "item_knn":
        matrix = item_knn(interactions, k=k)
    else:
        raise ValueError(f"unknown behaviour algorithm {algorithm!r}")
    logger.info(
        "behaviour model built algorithm=%s users=%d items=%d neighbours=%d ms=%d",
        algorithm,
        len(users),
        len(items),
        matrix.nnz,
        (time.monotonic() - started) * 1000,
    )
    return Neighbours(algorithm=algorithm, item_ids=items, matrix=matrix)
