"""A learned text model over the frozen encoder: a linear query map and a linear item map.

Arrays in, numbers out; no database. The frozen encoder's vectors go in (a question's query
vector, an item's served vector); the adapter maps each side with its own square matrix and
normalises, so a question and the items people chose after asking it come closer than the
frozen encoder puts them. Trained with a softmax of each pair's item against other items, starting from
the identity (the frozen encoder itself) and pulled back towards it by a penalty, so what few
pairs teach moves the space only where they agree. The other items are the batch's (an
in-batch softmax) or, with catalog_negatives, that many items of the whole catalog as well
(every item when the catalog is smaller): the answer must beat the catalog it is searched in,
not only the few items other questions of its batch chose. Another answer of the same
question is never a negative.

The artifact is numpy's .npz of two float32 arrays, read with allow_pickle=False: loading a
stored version cannot run code.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ALGORITHM = "linear_adapter"


@dataclass(frozen=True)
class AdapterSettings:
    """The training's hyper-parameters. The defaults were set once, not tuned; over MovieLens'
    community vectors P4's validation split chose every item as a negative, temperature 0.02
    and learning rate 5e-5 (EVALUATION.md "P4"), which a deployment sets per catalog
    (TEXT_MODEL_CATALOG_NEGATIVES, TEXT_MODEL_TEMPERATURE, TEXT_MODEL_LEARNING_RATE)."""

    temperature: float = 0.05
    learning_rate: float = 2e-3
    # Penalty on the distance of each map from the identity (squared Frobenius norm), added to
    # each batch's loss.
    identity_penalty: float = 1e-3
    batch_size: int = 256
    max_epochs: int = 60
    # Items of the catalog each batch's answers are also scored against (0: the batch's own
    # answers only). Each batch maps this many item vectors: a (n x d) by (d x d) product
    # forward and back, 9,742 items x 384 dims about 0.1 s on one core.
    catalog_negatives: int = 0

    def describe(self) -> str:
        negatives = f", {self.catalog_negatives} catalog negatives" if self.catalog_negatives else ""
        return (
            f"temperature {self.temperature:g}, identity penalty {self.identity_penalty:g}, "
            f"learning rate {self.learning_rate:g}, batch {self.batch_size}{negatives}"
        )


def normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class LinearAdapter:
    query_map: np.ndarray  # (d, d) float32
    item_map: np.ndarray  # (d, d) float32

    @classmethod
    def identity(cls, dimensions: int) -> LinearAdapter:
        eye = np.eye(dimensions, dtype=np.float32)
        return cls(eye, eye.copy())

    @property
    def dimensions(self) -> int:
        return int(self.query_map.shape[0])

    def queries(self, vectors: np.ndarray) -> np.ndarray:
        """Unit vectors of questions (the frozen encoder's query vectors, (n, d) or (d,))."""
        return normalised(np.asarray(vectors, dtype=np.float32) @ self.query_map)

    def items(self, vectors: np.ndarray) -> np.ndarray:
        """Unit vectors of items (their served vectors, (n, d) or (d,))."""
        return normalised(np.asarray(vectors, dtype=np.float32) @ self.item_map)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, query_map=self.query_map.astype(np.float32), item_map=self.item_map.astype(np.float32))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> LinearAdapter:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as arrays:
            query_map, item_map = arrays["query_map"], arrays["item_map"]
        if query_map.ndim != 2 or query_map.shape[0] != query_map.shape[1] or item_map.shape != query_map.shape:
            raise ValueError(f"not a linear adapter: maps of shapes {query_map.shape} and {item_map.shape}")
        return cls(query_map.astype(np.float32), item_map.astype(np.float32))


def ndcg_at_k(scores: np.ndarray, relevant: list[set[int]], *, k: int) -> float:
    """Mean NDCG@k of rows of scores (one per question, one column per item) against each
    question's relevant columns."""
    values = []
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    for row, wanted in zip(top, relevant, strict=True):
        if not wanted:
            continue
        gains = np.array([1.0 if int(column) in wanted else 0.0 for column in row])
        ideal = float(discounts[: min(len(wanted), k)].sum())
        values.append(float((gains * discounts[: len(gains)]).sum()) / ideal)
    return float(np.mean(values)) if values else 0.0


def adapter_ndcg(
    adapter: LinearAdapter, *, queries: np.ndarray, items: np.ndarray, relevant: list[set[int]], k: int
) -> float:
    """NDCG@k of ranking every item (rows of `items`, the served vectors) for each question."""
    if len(queries) == 0:
        return 0.0
    return ndcg_at_k(adapter.queries(queries) @ adapter.items(items).T, relevant, k=k)


@dataclass(frozen=True)
class Training:
    adapter: LinearAdapter
    epochs: int  # epochs run (the best one's, when a validation chose it)
    curve: list[float]  # the validation figure after each epoch (empty without one)
    seconds: float


def adapter_train(
    *,
    query_vectors: np.ndarray,
    item_vectors: np.ndarray,
    pair_items: np.ndarray,
    pair_groups: np.ndarray | None = None,
    epochs: int | None = None,
    validate: Callable[[LinearAdapter], float] | None = None,
    patience: int = 8,
    seed: int = 0,
    threads: int = 1,
    hyper: AdapterSettings | None = None,
) -> Training:
    """Train on pairs (query_vectors[i] -> item_vectors[pair_items[i]]).

    pair_groups: which question each pair is (an integer per pair; None: each pair its own):
    with catalog negatives, the other items of the same question are no negatives.

    With `validate` (a figure to maximise), training stops after `patience` epochs without a
    better figure and returns the best epoch's adapter; without it, runs `epochs` epochs (the
    refit on every pair, for as many epochs as the validation chose). epochs None: the
    settings' max_epochs.
    """
    import torch

    started = time.monotonic()
    hyper = hyper or AdapterSettings()
    # One thread: the batches are small (256 x 384 by 384 x 384), and torch's thread pool on a
    # busy machine costs more than it gives: 60 epochs of 300 pairs took 24.8 s with the default
    # pool and 1.9 s with one thread here (2 cores, load 12). The caller's setting (an encoder
    # in the same process) is restored afterwards.
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(
            torch,
            query_vectors=query_vectors,
            item_vectors=item_vectors,
            pair_items=pair_items,
            pair_groups=np.arange(len(pair_items)) if pair_groups is None else np.asarray(pair_groups),
            epochs=hyper.max_epochs if epochs is None else epochs,
            validate=validate,
            patience=patience,
            seed=seed,
            started=started,
            hyper=hyper,
        )
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    torch,
    *,
    query_vectors: np.ndarray,
    item_vectors: np.ndarray,
    pair_items: np.ndarray,
    pair_groups: np.ndarray,
    epochs: int,
    validate: Callable[[LinearAdapter], float] | None,
    patience: int,
    seed: int,
    started: float,
    hyper: AdapterSettings,
) -> Training:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dimensions = int(item_vectors.shape[1])
    queries = torch.from_numpy(np.ascontiguousarray(query_vectors, dtype=np.float32))
    items = torch.from_numpy(np.ascontiguousarray(item_vectors, dtype=np.float32))
    targets = torch.from_numpy(np.asarray(pair_items, dtype=np.int64))
    groups = torch.from_numpy(np.asarray(pair_groups, dtype=np.int64))
    answers_of: dict[int, list[int]] = {}
    for group, item_row in zip(groups.tolist(), targets.tolist(), strict=True):
        answers_of.setdefault(group, []).append(item_row)
    eye = torch.eye(dimensions)
    query_delta = torch.zeros(dimensions, dimensions, requires_grad=True)
    item_delta = torch.zeros(dimensions, dimensions, requires_grad=True)
    optimiser = torch.optim.Adam([query_delta, item_delta], lr=hyper.learning_rate)

    def current() -> LinearAdapter:
        with torch.no_grad():
            return LinearAdapter((eye + query_delta).numpy().copy(), (eye + item_delta).numpy().copy())

    best, best_figure, best_epoch, curve, waited = current(), -1.0, 0, [], 0
    n_pairs = len(targets)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n_pairs, generator=generator)
        for start in range(0, n_pairs, hyper.batch_size):
            batch = order[start : start + hyper.batch_size]
            if len(batch) < 2:
                continue
            batch_items = targets[batch]
            query = torch.nn.functional.normalize(queries[batch] @ (eye + query_delta), dim=1)
            if hyper.catalog_negatives:
                logits, answers = _catalog_logits(
                    torch,
                    query,
                    items,
                    eye + item_delta,
                    batch_items=batch_items,
                    answers_of=[answers_of[group] for group in groups[batch].tolist()],
                    negatives=hyper.catalog_negatives,
                    generator=generator,
                )
                loss = torch.nn.functional.cross_entropy(logits / hyper.temperature, answers)
            else:
                item = torch.nn.functional.normalize(items[batch_items] @ (eye + item_delta), dim=1)
                logits = query @ item.T / hyper.temperature
                # Another pair of the batch with the same item is no negative: it is the same answer.
                same = batch_items[:, None] == batch_items[None, :]
                same.fill_diagonal_(False)
                logits = logits.masked_fill(same, float("-inf"))
                loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            penalty = hyper.identity_penalty * (query_delta.square().sum() + item_delta.square().sum())
            optimiser.zero_grad()
            (loss + penalty).backward()
            optimiser.step()
        if validate is None:
            continue
        figure = validate(current())
        curve.append(round(figure, 4))
        if figure > best_figure:
            best, best_figure, best_epoch, waited = current(), figure, epoch, 0
        else:
            waited += 1
            if waited >= patience:
                break
    if validate is None:
        best, best_epoch = current(), epochs
    return Training(adapter=best, epochs=best_epoch, curve=curve, seconds=round(time.monotonic() - started, 1))


def _catalog_logits(
    torch,
    query,
    items,
    item_map,
    *,
    batch_items,
    answers_of: list[list[int]],
    negatives: int,
    generator,
):
    """Cosines of each query with its batch's answers and `negatives` items of the catalog (all
    of them when there are no more), the other answers of the same question masked out; and the
    column of each query's own answer."""
    n_items = items.shape[0]
    if negatives >= n_items:
        columns = torch.arange(n_items)
    else:
        sampled = torch.randperm(n_items, generator=generator)[:negatives]
        columns = torch.unique(torch.cat([batch_items, sampled]))
    position = torch.full((n_items,), -1, dtype=torch.int64)
    position[columns] = torch.arange(len(columns))
    item = torch.nn.functional.normalize(items[columns] @ item_map, dim=1)
    logits = query @ item.T
    column_of = position.tolist()
    rows, masked = [], []
    for row, (own, answers) in enumerate(zip(batch_items.tolist(), answers_of, strict=True)):
        for other in answers:
            if other != own and column_of[other] >= 0:
                rows.append(row)
                masked.append(column_of[other])
    if rows:
        logits = logits.index_put((torch.tensor(rows), torch.tensor(masked)), torch.tensor(float("-inf")))
    return logits, position[batch_items]
