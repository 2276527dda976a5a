from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.models import EmbeddedTextMixin, TextVector

# Ratings are stars on a 0.5 to 5 scale (MovieLens uses half stars).
RATING_MIN = 0.5
RATING_MAX = 5.0


class User(AbstractUser):
    # The id a bundle or an integrating system knows this person by (users.csv user_id).
    external_id = models.CharField(max_length=200, unique=True, null=True, blank=True)
    display_name = models.CharField(max_length=200, blank=True)
    # Set when new activity arrived in bulk (an import); the pending-embeddings batch rebuilds
    # these people's interest vectors after their texts and items have vectors.
    interest_stale = models.BooleanField(default=False, db_index=True, editable=False)

    def __str__(self) -> str:
        return self.display_name or self.username


class ActivityKind(models.TextChoices):
    VIEW = "view", "View"
    CLICK = "click", "Click"
    ADD_TO_CART = "add_to_cart", "Add to cart"
    PURCHASE = "purchase", "Purchase"
    RATING = "rating", "Rating"
    REVIEW = "review", "Review"
    COMMENT = "comment", "Comment"
    TAG = "tag", "Tag"
    SEARCH = "search", "Search"
    CHAT = "chat", "Chat message"
    DISMISS = "dismiss", "Dismiss"


# Kinds that are about one item, and kinds that are the person's own words.
ITEM_KINDS = frozenset(
    {
        ActivityKind.VIEW,
        ActivityKind.CLICK,
        ActivityKind.ADD_TO_CART,
        ActivityKind.PURCHASE,
        ActivityKind.RATING,
        ActivityKind.REVIEW,
        ActivityKind.COMMENT,
        ActivityKind.TAG,
        ActivityKind.DISMISS,
    }
)
TEXT_KINDS = frozenset(
    {ActivityKind.REVIEW, ActivityKind.COMMENT, ActivityKind.TAG, ActivityKind.SEARCH, ActivityKind.CHAT}
)
TEXT_ONLY_KINDS = frozenset({ActivityKind.SEARCH, ActivityKind.CHAT})
# What counts as a person choosing an item. Two definitions, different on purpose, both here:
# - BEHAVIOUR_KINDS: what the behaviour model, item popularity and the re-ranker's labels learn
#   from (rows with an item): everything a person did with an item except saying they do not
#   want it; a tag or a comment on an item is attention to it too.
# - INTERACTION_KINDS: what the offline evaluation splits, predicts and scores as hits. Tags and
#   comments are the person's own words about an item: the evaluation reads them as text before
#   the split point (EVALUATION.md), never as items to predict.
# A dismissal is negative in both. Changing either one changes the measured figures.
BEHAVIOUR_KINDS = frozenset(ActivityKind.values) - {ActivityKind.DISMISS}
INTERACTION_KINDS = ITEM_KINDS - {ActivityKind.TAG, ActivityKind.COMMENT, ActivityKind.DISMISS}


class Activity(EmbeddedTextMixin):
    """One thing a person did or wrote: a view, a purchase, a rating, a review, a question."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="activities")
    kind = models.CharField(max_length=16, choices=ActivityKind.choices)
    item = models.ForeignKey("catalog.Item", on_delete=models.CASCADE, null=True, blank=True, related_name="activities")
    # NULL, not "": a behaviour event has no text at all, and the constraints below test for it.
    text = models.TextField(null=True, blank=True)  # noqa: DJ001
    rating = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)
    # Fingerprint of an imported event, so importing the same bundle twice adds nothing.
    source_key = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "activities"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="activity_user_recent_idx"),
            models.Index(fields=["item", "kind"], name="activity_item_kind_idx"),
            # Popularity and trends as of a moment (the re-ranker's training, offline replays).
            models.Index(fields=["created_at"], name="activity_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ActivityKind.values), name="activity_kind_valid"),
            models.CheckConstraint(
                condition=Q(rating__isnull=True) | Q(rating__gte=RATING_MIN, rating__lte=RATING_MAX),
                name="activity_rating_in_range",
            ),
            models.CheckConstraint(
                condition=~Q(kind=ActivityKind.RATING) | Q(rating__isnull=False),
                name="activity_rating_kind_has_rating",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=sorted(ITEM_KINDS)) | Q(item__isnull=False),
                name="activity_item_kind_has_item",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=sorted(TEXT_ONLY_KINDS)) | (Q(text__isnull=False) & ~Q(text="")),
                name="activity_text_kind_has_text",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind} {self.item_id or ''}".strip()

    @property
    def has_text(self) -> bool:
        return bool(self.text)


class ActivityVector(TextVector):
    activity = models.ForeignKey(Activity, on_delete=models.CASCADE, related_name="vectors")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["activity", "model_name"], name="activity_vector_one_per_model"),
            TextVector.dimension_constraint("activity_vector_dimensions_match"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} vector of activity {self.activity_id}"


class HelpfulVote(models.Model):
    """One person's verdict on another person's review or comment: helpful or not.

    Read by the community vectors: a text others found helpful says more about its item than one
    they found unhelpful (recommendations.vectors.community). One vote a person a text; voting
    again replaces it. It goes with either person's account.
    """

    activity = models.ForeignKey(Activity, on_delete=models.CASCADE, related_name="helpful_votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="helpful_votes")
    helpful = models.BooleanField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["activity", "user"], name="helpful_vote_one_per_person")]

    def __str__(self) -> str:
        return f"{self.user_id} {'helpful' if self.helpful else 'not helpful'} on {self.activity_id}"
