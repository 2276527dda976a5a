"""The adapter's training (ml/text_adapter.py): which items each answer is scored against."""

import numpy as np

from recommendations.ml.text_adapter import AdapterSettings, LinearAdapter, adapter_ndcg, adapter_train


def _one_answer_world(n: int = 30, dimensions: int = 16):
    """Every question led to the same item, and the frozen space puts items nobody chose (they
    carry the questions' generic word, axis 0) above it."""
    rng = np.random.default_rng(0)
    answer = np.zeros(dimensions, dtype=np.float32)
    answer[1] = 1.0
    others = rng.normal(size=(n, dimensions)).astype(np.float32) * 0.3
    others[:, 0] = 1.0
    items = np.concatenate([answer[None, :], others / np.linalg.norm(others, axis=1, keepdims=True)])
    queries = np.tile(answer, (n, 1)) + rng.normal(size=(n, dimensions)).astype(np.float32) * 0.1
    queries[:, 0] = 1.5
    return queries, items, np.zeros(n, dtype=np.int64)


def _trained_ndcg(catalog_negatives: int) -> float:
    queries, items, pair_items = _one_answer_world()
    training = adapter_train(
        query_vectors=queries,
        item_vectors=items,
        pair_items=pair_items,
        epochs=40,
        hyper=AdapterSettings(learning_rate=1e-2, batch_size=8, catalog_negatives=catalog_negatives),
    )
    return adapter_ndcg(training.adapter, queries=queries, items=items, relevant=[{0}] * len(queries), k=5)


def test_catalog_negatives_teach_what_the_batches_answers_cannot():
    queries, items, _pair_items = _one_answer_world()
    identity = LinearAdapter.identity(items.shape[1])
    frozen = adapter_ndcg(identity, queries=queries, items=items, relevant=[{0}] * len(queries), k=5)

    # In a batch the other questions' answer is the same item (no negative): nothing to learn.
    assert frozen < 0.3 and _trained_ndcg(0) == frozen
    # Against the catalog the answer must beat the items nobody chose.
    assert _trained_ndcg(1_000) > 0.9
    # A sample of the catalog (with the batch's answers) is enough here too.
    assert _trained_ndcg(10) > 0.9


def test_another_answer_of_the_same_question_is_no_negative():
    """One question, two items it led to, and an item nobody chose: trained against the whole
    catalog, both answers stay above the unchosen item."""
    rng = np.random.default_rng(1)
    items = rng.normal(size=(3, 8)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    question = (items[0] + items[1]) / 2
    queries = np.stack([question, question])

    training = adapter_train(
        query_vectors=queries,
        item_vectors=items,
        pair_items=np.array([0, 1]),
        pair_groups=np.array([7, 7]),
        epochs=30,
        hyper=AdapterSettings(learning_rate=1e-2, batch_size=2, catalog_negatives=100),
    )

    scores = training.adapter.queries(question) @ training.adapter.items(items).T
    assert min(scores[0], scores[1]) > scores[2] + 0.2
    # The two answers were not pushed apart from each other: they end up about equally close.
    assert abs(scores[0] - scores[1]) < 0.2
