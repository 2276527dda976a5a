# Experiment arms that name a text model version (issue #16): free-text experiments.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("recommendations", "0014_community_vectors"),
    ]

    operations = [
        migrations.AddField(
            model_name="experimentarm",
            name="text_model",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="recommendations.textmodel",
            ),
        ),
    ]
