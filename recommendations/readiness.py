"""The recommender's readiness check, registered by RecommendationsConfig.ready(), and the
serving encoder's warm-up when a web process starts (config/wsgi.py)."""

from __future__ import annotations

from typing import Any

from core.conf import recommender_settings


def check_encoder() -> dict[str, Any]:
    # Loading the encoder is what readiness waits for: while the web process's warm-up loads it,
    # readiness says "warming" at once; without a warm-up (a Celery worker, a shell) the first
    # probe loads it (seconds) so the first real free-text request does not. Imported here, not
    # at the top: registering the check in ready() must not import torch.
    from recommendations.ml.encoder import encoder_warming, get_encoder

    model = recommender_settings().serving_model
    if encoder_warming(model):
        return {"ok": False, "warming": True, "model": model, "detail": "warming: the encoder is loading"}
    encoder = get_encoder(model)
    return {"ok": True, "model": encoder.name, "runtime": encoder.runtime}


def encoder_warm_up_start() -> None:
    """Load the serving encoder in the background, and the English model its card asks for a
    second opinion (serving.second_opinion): the first free-text question after a start then
    answers in milliseconds instead of waiting seconds for either model."""
    from recommendations.ml.encoder import encoder_warm_up
    from recommendations.ml.model_cards import model_card

    model = recommender_settings().serving_model
    encoder_warm_up(model)
    if second := model_card(model).english_second_opinion:
        encoder_warm_up(second)
