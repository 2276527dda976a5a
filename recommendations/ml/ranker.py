"""Re-ranker models: arrays in, scores out; no database access.

Two algorithms behind one interface, stored as a self-describing artifact (JSON bytes, never a
pickle, so loading a stored version cannot run code):
- "lambdarank": LightGBM's gradient-boosted LambdaRank, optimising NDCG per person directly;
  handles missing features (NaN) natively.
- "logistic_regression": scikit-learn's logistic regression on standardised features (missing
  values read as 0 after standardisation, i.e. the training mean). A simple, robust baseline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

# Chosen on MovieLens P1's validation people (the train part's latest, never the test part):
# 300 trees of 31 leaves reached validation NDCG@20 0.143, below the behaviour source alone
# (0.156): they learn the earlier people's absolute popularity and ages too well. Smaller,
# more regularised trees generalise forward in time better (0.164).
LAMBDARANK_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "n_estimators": 200,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 200,
    "reg_lambda": 10.0,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "lambdarank_truncation_level": 40,
    "random_state": 0,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


@dataclass
class Ranker:
    algorithm: str
    features: list[str]
    payload: dict

    def score(self, matrix: np.ndarray) -> np.ndarray:
        """Higher is better; one score per row of matrix (columns in self.features order)."""
        if matrix.shape[0] == 0:
            return np.zeros(0)
        if self.algorithm == "lambdarank":
            return _booster(self.payload["model"]).predict(matrix, num_threads=1)
        standardised = (matrix - np.asarray(self.payload["mean"])) / np.asarray(self.payload["scale"])
        standardised = np.nan_to_num(standardised, nan=0.0)
        return standardised @ np.asarray(self.payload["coef"]) + self.payload["intercept"]

    def to_bytes(self) -> bytes:
        return json.dumps({"algorithm": self.algorithm, "features": self.features, "payload": self.payload}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Ranker:
        loaded = json.loads(bytes(data))
        return cls(loaded["algorithm"], loaded["features"], loaded["payload"])


_BOOSTERS: dict[int, object] = {}


def _booster(model: str):
    import lightgbm

    key = hash(model)
    if key not in _BOOSTERS:
        _BOOSTERS.clear()  # one active version at a time: keep only the latest
        _BOOSTERS[key] = lightgbm.Booster(model_str=model)
    return _BOOSTERS[key]


def train_lambdarank(matrix: np.ndarray, labels: np.ndarray, groups: list[int], features: list[str]) -> Ranker:
    """groups: rows per person, in order (LightGBM's query sizes)."""
    import lightgbm

    model = lightgbm.LGBMRanker(**LAMBDARANK_PARAMS, n_jobs=2)
    model.fit(matrix, labels, group=groups)
    return Ranker("lambdarank", list(features), {"model": model.booster_.model_to_string()})


def train_logistic_regression(matrix: np.ndarray, labels: np.ndarray, features: list[str]) -> Ranker:
    from sklearn.linear_model import LogisticRegression

    # Mean and spread of the known values per feature (a feature never known: 0 and 1).
    known = ~np.isnan(matrix)
    counts = np.maximum(known.sum(axis=0), 1)
    mean = np.where(known, matrix, 0.0).sum(axis=0) / counts
    variance = np.where(known, (matrix - mean) ** 2, 0.0).sum(axis=0) / counts
    scale = np.where(variance < 1e-18, 1.0, np.sqrt(variance))
    standardised = np.nan_to_num((matrix - mean) / scale, nan=0.0)
    model = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced")
    model.fit(standardised, labels)
    return Ranker(
        "logistic_regression",
        list(features),
        {
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "coef": model.coef_[0].tolist(),
            "intercept": float(model.intercept_[0]),
        },
    )


def ndcg_of_groups(scores: np.ndarray, labels: np.ndarray, groups: list[int], *, k: int, relevant: list[int]) -> float:
    """Mean NDCG@k over groups; `relevant` holds each group's number of relevant items in
    total (candidates may miss some, which counts against every method alike)."""
    values = []
    start = 0
    for size, n_relevant in zip(groups, relevant, strict=True):
        group_scores, group_labels = scores[start : start + size], labels[start : start + size]
        start += size
        if n_relevant == 0:
            continue
        order = np.lexsort((np.arange(size), -group_scores))[:k]
        gains = group_labels[order]
        dcg = float(np.sum(gains / np.log2(np.arange(2, len(gains) + 2))))
        ideal = float(np.sum(1.0 / np.log2(np.arange(2, min(n_relevant, k) + 2))))
        values.append(dcg / ideal)
    return float(np.mean(values)) if values else 0.0
