"""Ranking metrics and the scoring of a method's rankings against a split."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from recommendations.evaluation.split import Split


def recall_at_k(ranked: list, relevant: set, k: int) -> float:
    """Hits in the top k over min(|relevant|, k): 1.0 is the best any ranking could do."""
    if not relevant:
        raise ValueError("recall needs at least one relevant item")
    return sum(1 for item in ranked[:k] if item in relevant) / min(len(relevant), k)


def ndcg_at_k(ranked: list, relevant: set, k: int) -> float:
    if not relevant:
        raise ValueError("NDCG needs at least one relevant item")
    dcg = sum(1.0 / math.log2(position + 2) for position, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(position + 2) for position in range(min(len(relevant), k)))
    return dcg / ideal


def reciprocal_rank(ranked: list, relevant: set, k: int) -> float:
    for position, item in enumerate(ranked[:k]):
        if item in relevant:
            return 1.0 / (position + 1)
    return 0.0


@dataclass
class MethodResult:
    name: str
    recall: float
    ndcg: float
    mrr: float
    coverage: float
    latency_ms: list[float] = field(default_factory=list)
    per_key_ndcg: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        latency = np.array(self.latency_ms) if self.latency_ms else np.array([0.0])
        return {
            "method": self.name,
            "recall": round(self.recall, 4),
            "ndcg": round(self.ndcg, 4),
            "mrr": round(self.mrr, 4),
            "coverage": round(self.coverage, 4),
            "latency_p50_ms": round(float(np.percentile(latency, 50)), 1),
            "latency_p99_ms": round(float(np.percentile(latency, 99)), 1),
        }


def score_rankings(
    name: str,
    rankings: dict[str, list[str]],
    split: Split,
    *,
    k: int,
    n_items: int,
    latency_ms: list[float] | None = None,
) -> MethodResult:
    recalls, ndcgs, rrs = [], [], []
    per_key: dict[str, float] = {}
    shown: set[str] = set()
    for user_id, relevant in split.test.items():
        ranked = rankings.get(user_id, [])
        recalls.append(recall_at_k(ranked, relevant, k))
        ndcgs.append(ndcg_at_k(ranked, relevant, k))
        per_key[user_id] = ndcgs[-1]
        rrs.append(reciprocal_rank(ranked, relevant, k))
        shown.update(ranked[:k])
    return MethodResult(
        name,
        float(np.mean(recalls)),
        float(np.mean(ndcgs)),
        float(np.mean(rrs)),
        len(shown) / max(n_items, 1),
        latency_ms or [],
        per_key,
    )
