"""The re-ranker that serves: the active version, loaded once per process; the documented blend
when none is active; activation."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from django.db import transaction

from core.conf import recommender_settings
from core.exceptions import ApplicationError
from recommendations.ml.ranker import Ranker
from recommendations.models import RankerModel
from recommendations.ranking.features import INDEX


class RankerError(ApplicationError):
    pass


@dataclass
class _Loaded:
    """The version this process last loaded, so a request reads its artifact only once."""

    id: int | None = None
    version: int | None = None
    ranker: Ranker | None = None


_active = _Loaded()


def active_ranker() -> tuple[RankerModel | None, Ranker | None]:
    """The active version and its model. One small query; the artifact is read only when the
    active version changed since this process last looked (a staff activation, a training)."""
    row = RankerModel.objects.filter(is_active=True).values_list("id", "version").first()
    if row is None:
        return None, None
    ranker_id, version = row
    if _active.id != ranker_id:
        artifact = RankerModel.objects.filter(id=ranker_id).values_list("artifact", flat=True).first()
        if artifact is None:
            return None, None
        _active.id, _active.version, _active.ranker = ranker_id, version, Ranker.from_bytes(artifact)
    return RankerModel(id=ranker_id, version=version), _active.ranker


# Versions an experiment's arms serve, by id. A version's artifact never changes once stored,
# so a loaded one stays right; a handful of arms at most, hence no eviction.
_versions: dict[int, tuple[RankerModel, Ranker]] = {}


def ranker_version(ranker_id: int) -> tuple[RankerModel | None, Ranker | None]:
    """A stored version and its model (an experiment arm's), read once per process."""
    if ranker_id not in _versions:
        row = RankerModel.objects.filter(id=ranker_id).values_list("version", "artifact").first()
        if row is None:
            return None, None
        version, artifact = row
        _versions[ranker_id] = (RankerModel(id=ranker_id, version=version), Ranker.from_bytes(artifact))
    return _versions[ranker_id]


def reset_active_ranker() -> None:
    _active.id, _active.version, _active.ranker = None, None, None
    _versions.clear()


def feature_matrix(rows: list[np.ndarray], names: list[str]) -> np.ndarray:
    """Rows in FEATURES order -> the columns a stored ranker reads, by name."""
    unknown = [name for name in names if name not in INDEX]
    if unknown:
        raise RankerError(f"the ranker reads features this version does not compute: {', '.join(unknown)}")
    if not rows:
        return np.zeros((0, len(names)))
    return np.stack(rows)[:, [INDEX[name] for name in names]]


def blend_scores(matrix: np.ndarray) -> np.ndarray:
    """The documented fallback when no ranker is active (rows in FEATURES order)."""
    config = recommender_settings()
    behaviour = np.nan_to_num(matrix[:, INDEX["behaviour_share"]])
    semantic = np.nan_to_num(matrix[:, INDEX["semantic_best"]])
    popularity = matrix[:, INDEX["popularity"]]
    best_popularity = popularity.max() if len(popularity) and popularity.max() > 0 else 1.0
    return behaviour + config.blend_semantic * semantic + config.blend_popularity * popularity / best_popularity


def ranker_activate(*, ranker: RankerModel) -> RankerModel:
    """Make this version the one that serves (staff may roll back to any stored version)."""
    with transaction.atomic():
        RankerModel.objects.select_for_update().filter(is_active=True).exclude(pk=ranker.pk).update(is_active=False)
        RankerModel.objects.filter(pk=ranker.pk).update(is_active=True)
    ranker.is_active = True
    logger.info("ranker v%d active", ranker.version)
    return ranker


def rankers_deactivate() -> int:
    """No version serves: the documented blend answers (a promoted blend arm, a roll-back)."""
    deactivated = RankerModel.objects.filter(is_active=True).update(is_active=False)
    logger.info("no ranker active: the blend serves")
    return deactivated


logger = logging.getLogger(__name__)
