# Hand-written 2026-12-01 (community text, issue #14).

import django.db.models.deletion
import django.db.models.expressions
import pgvector.django.vector
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0004_item_community_text"),
        ("recommendations", "0013_text_model"),
        ("users", "0002_activity_created_idx"),
    ]

    operations = [
        # Items people already wrote about (or chose after a question) before community vectors
        # existed: the next pending-embeddings batch builds theirs.
        migrations.RunSQL(
            """
            UPDATE catalog_item SET community_stale = true WHERE EXISTS (
                SELECT 1 FROM users_activity AS activity
                WHERE activity.item_id = catalog_item.id
                  AND ((activity.text IS NOT NULL AND activity.text <> '')
                       OR activity.kind IN ('click', 'add_to_cart', 'purchase')))
            """,
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.CreateModel(
            name="CommunityTextVector",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("model_name", models.CharField(max_length=200)),
                ("dimensions", models.PositiveSmallIntegerField()),
                ("embedding", pgvector.django.vector.VectorField()),
                ("text_hash", models.CharField(max_length=64)),
                ("created_at", models.DateTimeField()),
                (
                    "activity",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="community_vectors",
                        to="users.activity",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("activity", "model_name"), name="community_text_vector_one_per_model"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            (
                                "dimensions",
                                django.db.models.expressions.Func(
                                    django.db.models.expressions.F("embedding"),
                                    function="vector_dims",
                                    output_field=models.IntegerField(),
                                ),
                            )
                        ),
                        name="community_text_vector_dimensions_match",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="CommunityVector",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("model_name", models.CharField(max_length=200)),
                ("dimensions", models.PositiveSmallIntegerField()),
                ("embedding", pgvector.django.vector.VectorField()),
                ("n_texts", models.PositiveIntegerField()),
                ("n_people", models.PositiveIntegerField()),
                ("texts", models.JSONField(default=list)),
                ("applied_weight", models.FloatField(blank=True, null=True)),
                ("built_at", models.DateTimeField()),
                (
                    "item",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="community_vectors",
                        to="catalog.item",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("item", "model_name"), name="community_vector_one_per_model"),
                    models.CheckConstraint(
                        condition=models.Q(
                            (
                                "dimensions",
                                django.db.models.expressions.Func(
                                    django.db.models.expressions.F("embedding"),
                                    function="vector_dims",
                                    output_field=models.IntegerField(),
                                ),
                            )
                        ),
                        name="community_vector_dimensions_match",
                    ),
                ],
            },
        ),
    ]
