from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q
from pgvector.django import VectorField

from core.models import EmbeddedTextMixin, TextVector
from core.text import text_hash


class Placement(models.TextChoices):
    """What staff decided about an item in recommendations, beside what the ranker thinks."""

    NORMAL = "normal", "Ranked normally"
    PINNED = "pinned", "Pinned: first in personal recommendations"
    BANNED = "banned", "Banned: never recommended"


class Item(EmbeddedTextMixin):
    """Something that can be recommended: a product, a video, an article or a service."""

    external_id = models.CharField(max_length=200, unique=True)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=200, blank=True, db_index=True)
    tags = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True, db_index=True)
    placement = models.CharField(max_length=10, choices=Placement.choices, default=Placement.NORMAL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when what people wrote about the item changed (a review, a tag, a search followed by a
    # click of it, a deletion); the pending-embeddings batch rebuilds its community vector
    # (recommendations.vectors.community) and clears it. The dirty flag of User.interest_stale.
    community_stale = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["title", "id"]
        indexes = [
            GinIndex(fields=["tags"], name="item_tags_gin"),
            # The fresh source (newest items) and the pinned items of every request: without these
            # both read the whole catalog (89 and 96 ms per request at 100,000 items).
            models.Index(fields=["-created_at"], name="item_newest"),
            models.Index(fields=["placement"], condition=Q(placement="pinned"), name="item_pinned"),
            # The batch finds the few marked items without reading the catalog.
            models.Index(fields=["community_stale"], condition=Q(community_stale=True), name="item_community_stale"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(external_id=""), name="item_external_id_not_empty"),
            models.CheckConstraint(condition=~Q(title=""), name="item_title_not_empty"),
            models.CheckConstraint(condition=Q(price__isnull=True) | Q(price__gte=0), name="item_price_not_negative"),
            models.CheckConstraint(condition=Q(placement__in=Placement.values), name="item_placement_valid"),
        ]

    def __str__(self) -> str:
        return self.title

    def embedding_text(self) -> str:
        """The text the encoder reads for this item: title, category, tags, then description.

        Title first because the encoder truncates long input at its token limit and the title
        says the most; category and tags are short and carry the vocabulary people search with.
        """
        parts = [self.title.strip()]
        if self.category:
            parts.append(f"Category: {self.category}")
        if self.tags:
            parts.append(f"Tags: {', '.join(self.tags)}")
        if self.description:
            parts.append(self.description.strip())
        return ". ".join(part.rstrip(".") for part in parts if part) + "."

    def refresh_text_hash(self) -> bool:
        """Recompute text_hash; when the text changed, mark the vector pending. Returns changed."""
        new_hash = text_hash(self.embedding_text())
        if new_hash == self.text_hash:
            return False
        self.text_hash = new_hash
        self.embedding_status = "pending"
        self.embedding_error = ""
        return True


class ItemVector(TextVector):
    """The item's served vector for one model, and the vector of its catalog text alone.

    `embedding` is what every query reads: the catalog text's vector, or, when people wrote
    about the item, normalise(catalog vector + COMMUNITY_WEIGHT x community vector)
    (recommendations.vectors.community). `text_embedding` keeps the catalog text's own vector
    so the served one can be recombined when the community text or the weight changes; NULL on
    rows written before it existed, where `embedding` is still the catalog vector.
    """

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="vectors")
    text_embedding = VectorField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "model_name"], name="item_vector_one_per_model"),
            TextVector.dimension_constraint("item_vector_dimensions_match"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} vector of item {self.item_id}"
