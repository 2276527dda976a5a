import sys
import time

from django.core.management.base import BaseCommand
from django.db.models import Q
from tqdm import tqdm

from catalog.models import Item
from core.models import EmbeddingStatus
from recommendations.vectors import embedding
from users.models import Activity, User


class Command(BaseCommand):
    help = (
        "Embed items and activity texts and rebuild interest vectors, in this process (no broker "
        "needed: first installs, demos, a model change)."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--pending", action="store_true", help="rows waiting for a vector (the usual case)")
        which.add_argument("--failed", action="store_true", help="pending rows and rows whose embedding failed")
        which.add_argument("--all", action="store_true", help="everything again, e.g. after changing the encoder")

    def handle(self, *args, pending, failed, all, **options):
        if all:
            Item.objects.update(embedding_status=EmbeddingStatus.PENDING, text_hash="")
            Activity.objects.filter(~Q(text=None) & ~Q(text="")).update(
                embedding_status=EmbeddingStatus.PENDING, text_hash=""
            )
            User.objects.filter(activities__isnull=False).distinct().update(interest_stale=True)
            Item.objects.update(community_stale=True)
        waiting = embedding.embeddings_waiting_count()
        if failed:
            waiting["items"] += Item.objects.filter(embedding_status=EmbeddingStatus.FAILED).count()
            waiting["activities"] += Activity.objects.filter(embedding_status=EmbeddingStatus.FAILED).count()
        bars = {
            key: tqdm(total=count, desc=key, unit=" rows", file=sys.stderr, disable=None)
            for key, count in waiting.items()
        }
        started = time.monotonic()
        done = embedding.embeddings_process_pending(include_failed=failed, progress=lambda key, n: bars[key].update(n))
        for bar in bars.values():
            bar.close()
        seconds = time.monotonic() - started
        if done.get("skipped_locked"):
            self.stdout.write(self.style.WARNING("another embedding batch is running; nothing done here"))
            return
        texts = done["items"] + done["activities"]
        self.stdout.write(
            self.style.SUCCESS(
                f"embedded {done['items']} items and {done['activities']} activity texts "
                f"({texts / seconds if seconds else 0:.0f} texts/s), rebuilt {done['users']} interest profiles "
                f"and the community text of {done.get('community', 0)} items, "
                f"{done['failed']} failed, in {seconds:.1f} s"
            )
        )
