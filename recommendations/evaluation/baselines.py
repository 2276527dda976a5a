"""The protocol check: popularity and EASE in numpy on the same split (not the product)."""

from __future__ import annotations

import numpy as np

from recommendations.evaluation.split import Split


def baseline_rankings(split: Split, item_ids: list[str], *, k: int, ease_regularisation: float) -> dict[str, dict]:
    """Popularity and EASE (all weights) on the train split, in numpy: the protocol check."""
    from recommendations.retrieval.behaviour_model import ease_weights, interaction_matrix

    # (user id, item id) of each train interaction.
    interactions = [(row.user_id, item_id) for row in split.train if (item_id := row.interaction_item()) is not None]
    users = sorted({user_id for user_id, _ in interactions})
    user_index = {user_id: index for index, user_id in enumerate(users)}
    item_index = {item_id: index for index, item_id in enumerate(item_ids)}
    matrix = interaction_matrix(
        np.array([user_index[user_id] for user_id, _ in interactions]),
        np.array([item_index[item_id] for _, item_id in interactions]),
        len(users),
        len(item_ids),
    )
    popularity = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)
    # The product's own definition of the weights, all of them kept (it keeps the top-k per item).
    weights = ease_weights(matrix, regularisation=ease_regularisation)
    results: dict[str, dict] = {"popularity": {}, "EASE (all weights, numpy)": {}}
    for user_id in split.test:
        row = user_index.get(user_id)
        seen = matrix[row].indices if row is not None else np.array([], dtype=int)
        for name, scores in (
            ("popularity", popularity.copy()),
            (
                "EASE (all weights, numpy)",
                np.asarray(matrix[row] @ weights).ravel() if row is not None else np.zeros(len(item_ids)),
            ),
        ):
            scores[seen] = -np.inf
            top = np.argsort(-scores, kind="stable")[:k]
            results[name][user_id] = [item_ids[index] for index in top]
    return results
