import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from pgvector.django import VectorField

from core.models import TextVector


class UserInterest(models.Model):
    """A vector of what one person is interested in, built from their text and their items.

    A person with diverse tastes can have several (cluster 0, 1, ...), one per theme.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="interests")
    cluster = models.PositiveSmallIntegerField(default=0)
    # No fixed width: one row per model; see core.models.TextVector and core.vector_indexes.
    embedding = VectorField()
    dimensions = models.PositiveSmallIntegerField()
    embedding_model = models.CharField(max_length=200)
    n_events = models.PositiveIntegerField(default=0, help_text="How many activities this vector was built from.")
    weight = models.FloatField(default=1.0, help_text="Share of the person's activity behind this vector.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "embedding_model", "cluster"], name="user_interest_unique"),
            TextVector.dimension_constraint("user_interest_dimensions_match"),
        ]

    def __str__(self) -> str:
        return f"interest {self.cluster} of user {self.user_id}"


class RankerAlgorithm(models.TextChoices):
    LOGISTIC_REGRESSION = "logistic_regression", "Logistic regression"
    LAMBDARANK = "lambdarank", "Gradient-boosted LambdaRank"
    BLEND = "blend", "Hand-set blend"


class RankerModel(models.Model):
    """One trained version of the re-ranker. At most one is active."""

    version = models.PositiveIntegerField(unique=True)
    algorithm = models.CharField(max_length=32, choices=RankerAlgorithm.choices)
    features = models.JSONField(default=list, help_text="Feature names, in the order the model reads them.")
    trained_from = models.DateTimeField(null=True, blank=True)
    trained_until = models.DateTimeField(null=True, blank=True)
    validation_metrics = models.JSONField(default=dict, blank=True)
    artifact = models.BinaryField(editable=False)
    is_active = models.BooleanField(default=False)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_ranker"),
            models.CheckConstraint(
                condition=Q(trained_from__isnull=True)
                | Q(trained_until__isnull=True)
                | Q(trained_from__lte=models.F("trained_until")),
                name="ranker_training_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"ranker v{self.version} ({self.algorithm})"


class TextModel(models.Model):
    """One trained version of the text model: an adapter over the frozen encoder `base_model`,
    learned from the catalog's own (question -> chosen item) and (text -> its item) pairs.

    Its item vectors are written in catalog.ItemVector under `vector_key` before it may be
    activated, so the free-text path reads the active row once and takes both its query map and
    its item vectors from it: queries and items never come from different models. At most one
    is active per base encoder; none active means the frozen encoder answers.
    """

    version = models.PositiveIntegerField(unique=True)
    algorithm = models.CharField(max_length=32)
    base_model = models.CharField(max_length=150, help_text="The frozen encoder it adapts.")
    dimensions = models.PositiveSmallIntegerField()
    trained_from = models.DateTimeField(null=True, blank=True, help_text="Oldest pair it learned from.")
    trained_until = models.DateTimeField(null=True, blank=True, help_text="Newest pair it learned from.")
    training_pairs = models.JSONField(default=dict, help_text="Pairs learned from, by kind.")
    validation_metrics = models.JSONField(default=dict, blank=True)
    # The free-text floor in this model's space (see vectors/text_model.py), None: no floor.
    match_floor = models.FloatField(null=True, blank=True)
    # npz of float32 arrays (ml/text_adapter.py), never a pickle.
    artifact = models.BinaryField(editable=False)
    vectors_written_at = models.DateTimeField(null=True, blank=True, help_text="When its item vectors were built.")
    is_active = models.BooleanField(default=False)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["base_model"], condition=Q(is_active=True), name="one_active_text_model_per_encoder"
            ),
            models.CheckConstraint(
                condition=Q(trained_from__isnull=True)
                | Q(trained_until__isnull=True)
                | Q(trained_from__lte=models.F("trained_until")),
                name="text_model_training_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"text model v{self.version} ({self.algorithm} over {self.base_model})"

    @property
    def vector_key(self) -> str:
        """The model name its item vectors are stored under (never an encoder's name)."""
        return text_model_vector_key(self.base_model, self.version)


def text_model_vector_key(base_model: str, version: int) -> str:
    return f"{base_model}+text-model-v{version}"


class RecommendationContext(models.TextChoices):
    USER = "user", "For a user"
    TEXT = "text", "For a text"
    SIMILAR = "similar", "Similar items"
    # Staff looking at a person's recommendations (?user=<id>): logged, but not what the person
    # saw, so it is left out of their export and takes no feedback.
    STAFF = "staff", "Staff look-up of a user"


class Recommendation(models.Model):
    """One answer the recommender gave: who asked, for what, which ranker answered."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="recommendations"
    )
    context = models.CharField(max_length=16, choices=RecommendationContext.choices)
    # Who asked when it was not `user` (a staff look-up); the context says "staff" even once the
    # staff account is gone.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    query_text = models.TextField(blank=True)
    anchor_item = models.ForeignKey("catalog.Item", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    ranker = models.ForeignKey(RankerModel, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # The experiment and arm the person was in when this answer was given (empty: none ran).
    experiment = models.ForeignKey(
        "Experiment", on_delete=models.SET_NULL, null=True, blank=True, related_name="recommendations"
    )
    arm = models.ForeignKey("ExperimentArm", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(context__in=RecommendationContext.values), name="recommendation_context_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.context} recommendation {self.id}"


class RecommendedItem(models.Model):
    """One item shown in a recommendation, and what the person did with it (feedback)."""

    recommendation = models.ForeignKey(Recommendation, on_delete=models.CASCADE, related_name="items")
    item = models.ForeignKey("catalog.Item", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()
    score = models.FloatField()
    sources = models.JSONField(default=list)
    reason = models.TextField(blank=True)
    impressed_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["recommendation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["recommendation", "position"], name="recommended_item_position_unique"),
            models.UniqueConstraint(fields=["recommendation", "item"], name="recommended_item_once"),
        ]

    def __str__(self) -> str:
        return f"{self.item_id} at {self.position}"


class BehaviourModel(models.Model):
    """One build of the item-to-item model from interactions. Serving reads the active one."""

    version = models.PositiveIntegerField(unique=True)
    algorithm = models.CharField(max_length=32)
    n_users = models.PositiveIntegerField()
    n_items = models.PositiveIntegerField()
    n_interactions = models.PositiveIntegerField()
    n_neighbours = models.PositiveIntegerField()
    trained_until = models.DateTimeField(null=True, blank=True, help_text="Newest interaction it learned from.")
    build_seconds = models.FloatField(default=0.0)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_behaviour_model"
            ),
        ]

    def __str__(self) -> str:
        return f"behaviour model v{self.version} ({self.algorithm})"


class ItemNeighbour(models.Model):
    """item -> neighbour with a weight, in one behaviour model version (top-K per item)."""

    model = models.ForeignKey(BehaviourModel, on_delete=models.CASCADE, related_name="neighbours")
    # No database foreign keys to items: checking two of them per row doubled the time to COPY a
    # model's 1.6 million rows in. A deleted item's rows are harmless until the next rebuild
    # drops them: requests only reach neighbours through existing activities and active items.
    item = models.ForeignKey(
        "catalog.Item", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    neighbour = models.ForeignKey(
        "catalog.Item", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    weight = models.FloatField()

    class Meta:
        # No unique constraint: pairs are unique by construction (one sparse matrix per version),
        # and maintaining a second index over two million rows doubled the rebuild time.
        # The request-time query sums weights over a person's items: (model, item) finds them.
        indexes = [models.Index(fields=["model", "item"], name="item_neighbour_lookup")]

    def __str__(self) -> str:
        return f"{self.item_id} -> {self.neighbour_id} ({self.weight:.3f})"


class PrecomputedList(models.Model):
    """A person's ranked recommendations, computed ahead so a request only applies the rules of
    the moment (filters, pins, the per-category cap, the page).

    The worker recomputes it after each of the person's activities; a request computes it when
    it is missing or stale. It is used only while it matches the person's activities (their
    count and newest id), the active ranker, the settings, and is younger than
    RECOMMENDER_PRECOMPUTED_MAX_AGE. Derived data: deleting rows only costs a slower request.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    model_name = models.CharField(max_length=200, help_text="The encoder whose vectors it was computed with.")
    computed_at = models.DateTimeField(help_text="When its computation started.")
    activity_count = models.PositiveIntegerField()
    last_activity_id = models.BigIntegerField()
    ranker_id = models.IntegerField(null=True, help_text="The active ranker then (empty: the blend).")
    settings_digest = models.CharField(max_length=16, help_text="Of the recommender settings it was computed under.")
    item_ids = ArrayField(models.BigIntegerField(), help_text="Best first.")
    scores = ArrayField(models.FloatField())
    sources = models.JSONField(help_text="Per item, the sources that proposed it, best rank first.")
    reasons = ArrayField(models.TextField())
    ranker = models.CharField(max_length=100)
    fallback = models.BooleanField()
    notes = models.JSONField(default=list)
    complete = models.BooleanField(help_text="Every candidate found is in the list (none was cut).")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "model_name"], name="precomputed_list_unique"),
        ]

    def __str__(self) -> str:
        return f"precomputed list of user {self.user_id}"

    @property
    def answered_by_id(self) -> int | None:
        """The RankerModel that ordered the list: the active one it was computed with, unless
        it fell back (the blend answered; the active version could not score)."""
        return None if self.fallback else self.ranker_id


class ItemStats(models.Model):
    """Per-item interaction statistics for popularity and trending, rebuilt with the behaviour model."""

    item = models.OneToOneField("catalog.Item", on_delete=models.CASCADE, primary_key=True, related_name="stats")
    n_interactions = models.PositiveIntegerField(default=0)
    n_users = models.PositiveIntegerField(default=0)
    popularity = models.FloatField(default=0.0, help_text="Distinct people who interacted, all time.")
    trending = models.FloatField(default=0.0, help_text="Interactions weighted by recency (half-life).")
    first_interaction_at = models.DateTimeField(null=True, blank=True, help_text="When anyone first chose it.")
    last_interaction_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["-popularity"], name="item_stats_popular"),
            models.Index(fields=["-trending"], name="item_stats_trending"),
        ]

    def __str__(self) -> str:
        return f"stats of item {self.item_id}"


class EvaluationRun(models.Model):
    """One offline evaluation (`manage.py evaluate`): its figures, report and charts, for the staff pages.

    `figures` is the whole report.json: {"protocol", "dataset", "methods": [{"method", "recall",
    "ndcg", "mrr", "coverage", "latency_p50_ms", "latency_p99_ms", ...}], "buckets": ..., ...}.
    `charts` maps a chart name to a PNG (base64) so the page needs no file storage.
    """

    protocol = models.CharField(max_length=16)  # p1, p2, p3, bilingual
    dataset = models.CharField(max_length=500)
    git_commit = models.CharField(max_length=64, blank=True)
    figures = models.JSONField(default=dict)
    report_markdown = models.TextField(blank=True)
    charts = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"evaluation {self.protocol} of {self.dataset} at {self.created_at:%Y-%m-%d %H:%M}"


class FeedbackKind(models.TextChoices):
    IMPRESSION = "impression", "Impression (shown on screen)"
    CLICK = "click", "Click"
    DISMISS = "dismiss", "Dismiss (not interested)"


class Feedback(models.Model):
    """What a person did with one item of a logged recommendation: saw it, clicked it, dismissed it.

    One row per (recommendation, item, kind): a client that retries, or reports the same
    impression twice, changes nothing. A dismissal is also recorded as a users.Activity of kind
    dismiss, so the recommender stops proposing the item.
    """

    recommendation = models.ForeignKey(Recommendation, on_delete=models.CASCADE, related_name="feedback")
    item = models.ForeignKey("catalog.Item", on_delete=models.CASCADE, related_name="+")
    # The person who gave it; NULL for an anonymous visitor (a free-text answer they asked for).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="feedback"
    )
    kind = models.CharField(max_length=16, choices=FeedbackKind.choices)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="feedback_user_recent_idx")]
        constraints = [
            models.UniqueConstraint(fields=["recommendation", "item", "kind"], name="feedback_once_per_kind"),
            models.CheckConstraint(condition=Q(kind__in=FeedbackKind.values), name="feedback_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} of {self.item_id} in {self.recommendation_id}"


class ExperimentSurface(models.TextChoices):
    """Where an experiment runs: at most one runs on each at a time."""

    USER = "user", "Personal recommendations"
    TEXT = "text", "Free text"
    SIMILAR = "similar", "Similar items"


class ExperimentDecision(models.TextChoices):
    NONE = "", "Not decided"
    PROMOTED = "promoted", "Promoted an arm"
    STOPPED = "stopped", "Stopped"


class Experiment(models.Model):
    """An A/B test between versions on one surface (recommendations.experiments).

    People are assigned to an arm by a stable hash of (experiment, person)
    (recommendations.serving.arms); anonymous visitors take no part. It runs from `start_at`
    to `end_at` unless staff decide earlier: a promotion or a stop ends it at that moment
    (`end_at` becomes the decision time), so "running" is always start_at <= now < end_at.
    """

    name = models.CharField(max_length=200)
    surface = models.CharField(max_length=16, choices=ExperimentSurface.choices, default=ExperimentSurface.USER)
    start_at = models.DateTimeField()
    end_at = models.DateTimeField()
    # The fixed horizon's plan (recommendations.experiments.statistics): the verdict is read
    # once each arm has the planned impressions, not before (no peeking).
    minimum_effect = models.FloatField(
        default=0.10, help_text="The relative change in click-through rate worth detecting (0.10 = 10%)."
    )
    alpha = models.FloatField(default=0.05, help_text="False-positive rate of the test (two-sided).")
    power = models.FloatField(default=0.80, help_text="Chance to detect the minimum effect if it is real.")
    attribution_hours = models.PositiveIntegerField(
        default=24, help_text="An add-to-cart or purchase of a shown item within this many hours counts for the arm."
    )
    simulated = models.BooleanField(
        default=False, help_text="Seeded with simulated traffic (an example): not real people's behaviour."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decision = models.CharField(max_length=16, choices=ExperimentDecision.choices, default="", blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    promoted_arm = models.ForeignKey(
        "ExperimentArm", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The last computation of the online metrics (recommendations.experiments.metrics).
    metrics = models.JSONField(default=dict, blank=True)
    metrics_computed_at = models.DateTimeField(null=True, blank=True)
    # Set when a person with answers in this experiment deleted their account after the last
    # computation: the figures shown will change, and the page says so.
    metrics_stale_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-start_at", "-id"]
        indexes = [models.Index(fields=["surface", "end_at"], name="experiment_surface_end_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(end_at__gt=models.F("start_at")), name="experiment_ends_after_start"),
            models.CheckConstraint(condition=Q(surface__in=ExperimentSurface.values), name="experiment_surface_valid"),
            models.CheckConstraint(condition=Q(alpha__gt=0) & Q(alpha__lt=0.5), name="experiment_alpha_range"),
            models.CheckConstraint(condition=Q(power__gt=0) & Q(power__lt=1), name="experiment_power_range"),
            models.CheckConstraint(condition=Q(minimum_effect__gt=0), name="experiment_minimum_effect_positive"),
        ]

    def __str__(self) -> str:
        return f"experiment {self.name}" + (" (simulated)" if self.simulated else "")


class ExperimentArm(models.Model):
    """One arm: what answers the people assigned to it, and its share of the traffic.

    An arm is a ranker version and/or a text model version, each read by the surface that uses
    it: personal recommendations read `ranker` (empty: the documented blend, the control "no
    trained ranker"), free text reads `text_model` (empty: the frozen encoder, the control "no
    learned text model"). recommendations.experiments.services refuses a version on a surface
    that does not read it. Either is pinned: the arm does not follow the active version.
    """

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    position = models.PositiveSmallIntegerField(help_text="0 is the control the others are compared with.")
    name = models.CharField(max_length=100)
    ranker = models.ForeignKey(RankerModel, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    text_model = models.ForeignKey(TextModel, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    share = models.PositiveSmallIntegerField(help_text="Percent of the experiment's people.")

    class Meta:
        ordering = ["experiment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "position"], name="experiment_arm_position_unique"),
            models.CheckConstraint(condition=Q(share__gte=1) & Q(share__lte=99), name="experiment_arm_share_range"),
        ]

    def __str__(self) -> str:
        return f"arm {self.name} of experiment {self.experiment_id}"

    @property
    def version_label(self) -> str:
        """What serves the arm, in the words of its surface: on free text the text model (or the
        frozen encoder), elsewhere the ranker (or the blend); both when an arm names both."""
        text = None if self.text_model_id is None else str(self.text_model)
        ranker = None if self.ranker_id is None else str(self.ranker)
        if self.experiment.surface == ExperimentSurface.TEXT:
            return " + ".join(label for label in (ranker, text) if label) or "the frozen encoder"
        return " + ".join(label for label in (ranker, text) if label) or "the blend"


class ReplayCheck(models.Model):
    """A replay estimate of a version on past logged traffic (recommendations.experiments.replay),
    shown beside its offline validation metric before staff start an experiment with it."""

    ranker = models.ForeignKey(RankerModel, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    figures = models.JSONField(default=dict)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"replay check of {'the blend' if self.ranker_id is None else self.ranker_id}"


class CommunityTextVector(TextVector):
    """The passage vector of one person's text about items (a review, a tag, a search that led
    to a choice), for the items' community vectors. Items are encoded as passages and so is what
    people say about them (ml/model_cards.py); the ActivityVector of the same text is a query.
    Goes with the activity (and so with the person)."""

    activity = models.ForeignKey("users.Activity", on_delete=models.CASCADE, related_name="community_vectors")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["activity", "model_name"], name="community_text_vector_one_per_model"),
            TextVector.dimension_constraint("community_text_vector_dimensions_match"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} passage vector of activity {self.activity_id}"


class CommunityVector(models.Model):
    """What people wrote about one item, as one vector per model: the weighted mean of those
    texts' passage vectors (recommendations.vectors.community). Not unit length: texts that
    disagree (or a low rating's negative weight) shorten it, so they move the served vector less.

    `texts` lists what it was built from, heaviest first: [{"activity": id, "user": id, "kind":
    ..., "weight": w}], for staff (the admin) and for the person's export and erasure.
    """

    item = models.ForeignKey("catalog.Item", on_delete=models.CASCADE, related_name="community_vectors")
    model_name = models.CharField(max_length=200)
    dimensions = models.PositiveSmallIntegerField()
    embedding = VectorField()
    n_texts = models.PositiveIntegerField()
    n_people = models.PositiveIntegerField()
    texts = models.JSONField(default=list)
    # The COMMUNITY_WEIGHT the item's served vector was combined with (ItemVector.embedding);
    # a change of the setting makes the sweep recombine every item.
    applied_weight = models.FloatField(null=True, blank=True)
    built_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "model_name"], name="community_vector_one_per_model"),
            TextVector.dimension_constraint("community_vector_dimensions_match"),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} community vector of item {self.item_id}"
