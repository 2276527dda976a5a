# Hand-written 2026-12-01 (community text, issue #14).

import pgvector.django.vector
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # The index is built without locking writes to a large catalog (CONCURRENTLY cannot run in a
    # transaction); the columns are nullable or have a constant default: no table rewrite.
    atomic = False

    dependencies = [
        ("catalog", "0003_item_newest_and_pinned_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="item",
            name="community_stale",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AddField(
            model_name="itemvector",
            name="text_embedding",
            field=pgvector.django.vector.VectorField(blank=True, null=True),
        ),
        AddIndexConcurrently(
            model_name="item",
            index=models.Index(
                condition=models.Q(("community_stale", True)), fields=["community_stale"], name="item_community_stale"
            ),
        ),
    ]
