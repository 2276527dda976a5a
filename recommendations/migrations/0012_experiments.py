import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("recommendations", "0011_evaluation_run_protocol_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Experiment",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=200)),
                (
                    "surface",
                    models.CharField(
                        choices=[
                            ("user", "Personal recommendations"),
                            ("text", "Free text"),
                            ("similar", "Similar items"),
                        ],
                        default="user",
                        max_length=16,
                    ),
                ),
                ("start_at", models.DateTimeField()),
                ("end_at", models.DateTimeField()),
                (
                    "minimum_effect",
                    models.FloatField(
                        default=0.1,
                        help_text="The relative change in click-through rate worth detecting (0.10 = 10%).",
                    ),
                ),
                ("alpha", models.FloatField(default=0.05, help_text="False-positive rate of the test (two-sided).")),
                (
                    "power",
                    models.FloatField(default=0.8, help_text="Chance to detect the minimum effect if it is real."),
                ),
                (
                    "attribution_hours",
                    models.PositiveIntegerField(
                        default=24,
                        help_text="An add-to-cart or purchase of a shown item within this many hours counts for the arm.",
                    ),
                ),
                (
                    "simulated",
                    models.BooleanField(
                        default=False,
                        help_text="Seeded with simulated traffic (an example): not real people's behaviour.",
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "decision",
                    models.CharField(
                        blank=True,
                        choices=[("", "Not decided"), ("promoted", "Promoted an arm"), ("stopped", "Stopped")],
                        default="",
                        max_length=16,
                    ),
                ),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("metrics", models.JSONField(blank=True, default=dict)),
                ("metrics_computed_at", models.DateTimeField(blank=True, null=True)),
                ("metrics_stale_since", models.DateTimeField(blank=True, null=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-start_at", "-id"]},
        ),
        migrations.CreateModel(
            name="ExperimentArm",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("position", models.PositiveSmallIntegerField(help_text="0 is the control the others are compared with.")),
                ("name", models.CharField(max_length=100)),
                ("share", models.PositiveSmallIntegerField(help_text="Percent of the experiment's people.")),
                (
                    "experiment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="arms",
                        to="recommendations.experiment",
                    ),
                ),
                (
                    "ranker",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="recommendations.rankermodel",
                    ),
                ),
            ],
            options={"ordering": ["experiment", "position"]},
        ),
        migrations.AddField(
            model_name="experiment",
            name="promoted_arm",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="recommendations.experimentarm",
            ),
        ),
        migrations.CreateModel(
            name="ReplayCheck",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("figures", models.JSONField(default=dict)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "ranker",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="recommendations.rankermodel",
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-created_at", "-id"]},
        ),
        migrations.AddField(
            model_name="recommendation",
            name="experiment",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="recommendations",
                to="recommendations.experiment",
            ),
        ),
        migrations.AddField(
            model_name="recommendation",
            name="arm",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="recommendations.experimentarm",
            ),
        ),
        migrations.AddIndex(
            model_name="experiment",
            index=models.Index(fields=["surface", "end_at"], name="experiment_surface_end_idx"),
        ),
        migrations.AddConstraint(
            model_name="experiment",
            constraint=models.CheckConstraint(
                condition=models.Q(("end_at__gt", models.F("start_at"))), name="experiment_ends_after_start"
            ),
        ),
        migrations.AddConstraint(
            model_name="experiment",
            constraint=models.CheckConstraint(
                condition=models.Q(("surface__in", ["user", "text", "similar"])), name="experiment_surface_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="experiment",
            constraint=models.CheckConstraint(
                condition=models.Q(("alpha__gt", 0), ("alpha__lt", 0.5)), name="experiment_alpha_range"
            ),
        ),
        migrations.AddConstraint(
            model_name="experiment",
            constraint=models.CheckConstraint(
                condition=models.Q(("power__gt", 0), ("power__lt", 1)), name="experiment_power_range"
            ),
        ),
        migrations.AddConstraint(
            model_name="experiment",
            constraint=models.CheckConstraint(
                condition=models.Q(("minimum_effect__gt", 0)), name="experiment_minimum_effect_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="experimentarm",
            constraint=models.UniqueConstraint(fields=("experiment", "position"), name="experiment_arm_position_unique"),
        ),
        migrations.AddConstraint(
            model_name="experimentarm",
            constraint=models.CheckConstraint(
                condition=models.Q(("share__gte", 1), ("share__lte", 99)), name="experiment_arm_share_range"
            ),
        ),
    ]
