"""The recommender's settings (settings.RECOMMENDER), read once into a frozen, typed object.

Every app reads its knobs through `recommender_settings()`, never `settings.RECOMMENDER["X"]`:
the dict is checked once (a missing or unknown key, or a value of the wrong type, is
ImproperlyConfigured naming the key) and mypy knows each knob's type. It lives in core because
catalog and users read MAX_TEXT_LENGTH and IMPORT_BATCH_SIZE and may not import the recommender.

Read on first use, never at import time (settings may not be configured yet). A change of
settings.RECOMMENDER through override_settings or pytest-django's `settings` fixture sends
Django's setting_changed signal, which drops the cached object: the pattern of get_hashers /
reset_hashers in django/contrib/auth/hashers.py. Code that assigns settings.RECOMMENDER by hand
sends no signal and must call `recommender_settings_reset()` itself.
"""

import dataclasses
import functools
import types
import typing
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecommenderSettings:
    """One field per key of settings.RECOMMENDER (the key is the field's name in capitals unless
    the field says otherwise); what each knob does is documented beside it in config/settings.py."""

    encoder_model: str
    # The raw SERVING_MODEL (None: the encoder model); readers want `serving_model` below.
    serving_model_setting: str | None = dataclasses.field(metadata={"key": "SERVING_MODEL"})
    encoder_runtime: str
    encoder_threads: int
    encoder_cache_dir: str
    encoder_batch_size: int
    interest_history: int
    interest_half_life_days: int
    interest_max_clusters: int
    behaviour_algorithm: str
    behaviour_neighbours: int
    ease_regularisation: float
    trending_half_life_days: float
    exact_search_max_vectors: int
    exact_search_max_filtered: int
    hnsw_ef_search: int
    candidates_per_source: int
    history_items: int
    popular_by: str
    fresh_days: int
    fresh_candidates: int
    exclude_seen: bool
    exclude_seen_kinds: tuple[str, ...]
    precomputed_size: int
    precomputed_max_age: int
    precomputed_catch_up: int
    max_per_category: int
    blend_semantic: float
    blend_popularity: float
    text_popularity: float
    similar_semantic: float
    community_weight: float
    community_search_window: int
    community_half_life_days: float
    community_low_rating: float
    community_low_rating_weight: float
    community_person_cap: float
    community_spread_limit: int
    community_max_texts: int
    max_text_length: int
    activities_per_minute: int
    text_bytes_per_day: int
    import_batch_size: int
    ranker_label_fraction: float
    ranker_validation_share: float
    ranker_max_people: int  # 0: everyone with a label
    ranker_processes: int  # processes that build the training data (1: this one)
    ranker_cold_share: float
    ranker_validation_k: int
    text_model_min_pairs: int
    text_model_validation_share: float
    text_model_window_minutes: int
    text_model_sequence_pairs: int
    text_model_temperature: float
    text_model_learning_rate: float
    text_model_catalog_negatives: int

    @property
    def serving_model(self) -> str:
        """The encoder model whose vectors answer queries: SERVING_MODEL during an encoder
        change (until every vector of the new model is built), else ENCODER_MODEL."""
        return self.serving_model_setting or self.encoder_model

    def as_dict(self) -> dict[str, Any]:
        """The settings under their RECOMMENDER keys, as configured (for reports and digests)."""
        return {_key(field): getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, config: typing.Mapping[str, object]) -> "RecommenderSettings":
        fields = dataclasses.fields(cls)
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(config) - {_key(field) for field in fields})
        if unknown:
            raise ImproperlyConfigured(f"RECOMMENDER: unknown setting(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for field in fields:
            key = _key(field)
            if key not in config:
                raise ImproperlyConfigured(f"RECOMMENDER: {key} is missing")
            values[field.name] = _checked(key, config[key], hints[field.name])
        return cls(**values)


def _key(field: dataclasses.Field[Any]) -> str:
    return field.metadata.get("key", field.name.upper())


def _checked(key: str, value: object, expected: object) -> object:
    """`value` if it is of the `expected` type (ints pass for floats, a list of strings for a
    tuple of them), else ImproperlyConfigured naming the key."""
    if expected == tuple[str, ...]:
        if isinstance(value, list | tuple) and all(isinstance(part, str) for part in value):
            return tuple(value)
    elif isinstance(expected, types.UnionType):
        # str | None: the only union among the fields.
        if value is None or isinstance(value, str):
            return value
    elif expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif expected is int:
        # bool is an int to Python, but True as a count is a mistake in the settings.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(expected, type) and isinstance(value, expected):
        return value
    raise ImproperlyConfigured(f"RECOMMENDER: {key} must be {_type_name(expected)}, not {type(value).__name__}")


def _type_name(expected: object) -> str:
    return expected.__name__ if isinstance(expected, type) else str(expected)


@functools.cache
def recommender_settings() -> RecommenderSettings:
    """The checked settings.RECOMMENDER, built on first use and kept until it changes."""
    return RecommenderSettings.from_dict(settings.RECOMMENDER)


def recommender_settings_reset() -> None:
    recommender_settings.cache_clear()


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: object) -> None:
    if setting == "RECOMMENDER":
        recommender_settings_reset()
