"""Pieces shared by the models of several apps."""

from django.db import models

# Width of the vector columns: all-MiniLM-L6-v2 gives 384 numbers. A model of another width
# needs a migration of these columns (see README "Changing the encoder").
EMBEDDING_DIMENSIONS = 384


class EmbeddingStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    OK = "ok", "Embedded"
    FAILED = "failed", "Failed"
    # Rows with no text to embed (a view, a purchase): nothing for the encoder to do.
    NO_TEXT = "no_text", "No text"


class EmbeddedTextMixin(models.Model):
    """A row whose text gets a vector: the fingerprint of that text and how its vector stands.

    The vector column itself is declared by each model (its index differs); the encoder's name
    is stored beside every vector so vectors of different models are never compared.
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
