"""What one person may write over the API: activities per minute, bytes of text per day.

The limits are RECOMMENDER's ACTIVITIES_PER_MINUTE and TEXT_BYTES_PER_DAY (README "Configuration").
"""

from __future__ import annotations

from core.conf import recommender_settings
from core.quotas import Quota, quotas_consume
from users.models import User


def activity_quotas_consume(*, user: User, texts: list[str | None]) -> None:
    """Count one request's activities (one per entry of texts) and their text against the
    person's quotas before anything is written; over either, QuotaExceededError (429) and
    nothing is counted."""
    config = recommender_settings()
    text_bytes = sum(len(text.encode()) for text in texts if text)
    quotas_consume(
        ident=str(user.pk),
        amounts=[
            (Quota("activities", config.activities_per_minute, 60, "minute"), len(texts)),
            (Quota("bytes of text", config.text_bytes_per_day, 86_400, "day"), text_bytes),
        ],
    )
