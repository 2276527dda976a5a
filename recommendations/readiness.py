"""The recommender's readiness check, registered by RecommendationsConfig.ready()."""

from __future__ import annotations

from typing import Any

from core.conf import recommender_settings


def check_encoder() -> dict[str, Any]:
    # Loading the encoder is what readiness waits for: the first probe of a new process loads
    # it (a few seconds) so the first real free-text request does not. Imported here, not at the
    # top: registering the check in ready() must not import torch.
    from recommendations.ml.encoder import get_encoder

    encoder = get_encoder(recommender_settings().serving_model)
    return {"ok": True, "model": encoder.name, "runtime": encoder.runtime}
