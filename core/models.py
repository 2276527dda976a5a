"""Pieces shared by the models of several apps."""

from django.conf import settings
from django.db import models
from django.db.models import F, Func, IntegerField, Q
from pgvector.django import VectorField

# The largest id PostgreSQL's bigint holds: a bigger number named by a client is an unknown id
# (404 in a path, 400 in a body), never a database error.
MAX_ID = 2**63 - 1


class EmbeddingStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    OK = "ok", "Embedded"
    FAILED = "failed", "Failed"
    # Rows with no text to embed (a view, a purchase): nothing for the encoder to do.
    NO_TEXT = "no_text", "No text"


class EmbeddedTextMixin(models.Model):
    """A row whose text gets a vector: the fingerprint of that text and how its vector stands.

    The vectors themselves live in a TextVector table, one per model; embedding_model names the
    model of the newest one.
    """

    text_hash = models.CharField(max_length=64, blank=True, editable=False)
    embedding_model = models.CharField(max_length=200, blank=True, editable=False)
    embedded_at = models.DateTimeField(null=True, blank=True, editable=False)
    embedding_status = models.CharField(
        max_length=16, choices=EmbeddingStatus.choices, default=EmbeddingStatus.PENDING, db_index=True
    )
    embedding_error = models.TextField(blank=True, editable=False)

    class Meta:
        abstract = True


def vector_dims(field: str) -> Func:
    return Func(F(field), function="vector_dims", output_field=IntegerField())


class TextVector(models.Model):
    """One vector of one row's text, made by one model.

    Vectors of several models coexist (during an encoder change the old model keeps serving
    while the new one is built), so the column has no fixed width: each model gets its own
    partial HNSW index over ``embedding::vector(<its width>)`` (core.vector_indexes), and every
    query names its model, so vectors of different models are never compared.
    """

    model_name = models.CharField(max_length=200)
    dimensions = models.PositiveSmallIntegerField()
    embedding = VectorField()
    text_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        abstract = True

    @classmethod
    def dimension_constraint(cls, name: str) -> models.CheckConstraint:
        return models.CheckConstraint(condition=Q(dimensions=vector_dims("embedding")), name=name)


class IdempotencyRecord(models.Model):
    """The first answer to a write sent with an Idempotency-Key (core.idempotency).

    Written in the same transaction as the write itself, so there is never a write without its
    key nor a key without its write. One per person, method, path and key; removed after
    settings.IDEMPOTENCY_KEY_RETENTION by a periodic task, and with the person's account.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    key = models.CharField(max_length=255)
    # sha256 of the request (query string and parsed body): the same key with another request is 422.
    request_fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    # The body exactly as first sent (not JSONB, which would reorder its keys) and the headers
    # that describe it, so a replay is byte for byte the first answer.
    response_body = models.TextField()
    response_headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "method", "path", "key"], name="idempotency_key_once_per_caller")
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.key}"
