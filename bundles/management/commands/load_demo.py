import secrets
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from bundles.importing import bundle_import
from bundles.management.commands._import_report import progress_bar, write_summary
from bundles.reading import bundle_open
from bundles.simulated_history import SIMULATED_PREFIX, simulated_source
from users.models import User

DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "demo_bundle"


class Command(BaseCommand):
    help = "Load the demo catalog (shop, video and help items, demo users and their activity) and a staff login."

    def add_arguments(self, parser):
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument(
            "--simulated-people",
            type=int,
            default=0,
            help="also generate this many simulated people and their history (seeded; labelled simulated; "
            "make demo: 300, so a ranker can be trained and validated)",
        )

    def handle(self, *args, admin_username, simulated_people, **options):
        if simulated_people < 0:
            raise CommandError("--simulated-people must be 0 or more")
        bundle = bundle_open(DEMO_BUNDLE)
        summary = bundle_import(source=bundle, progress=progress_bar)
        write_summary(self, summary, rejections_file=None)
        if simulated_people:
            simulated = bundle_import(source=simulated_source(bundle.items(), people=simulated_people, seed=0))
            write_summary(self, simulated, rejections_file=None)
            self.stdout.write(
                self.style.WARNING(
                    f"{simulated_people} SIMULATED people ({SIMULATED_PREFIX}0001...) with a generated history "
                    "(bundles/simulated_history.py, seed 0): demo data, nobody's real behaviour"
                )
            )
        call_command("embed", "--pending", stdout=self.stdout, stderr=self.stderr)
        if not User.objects.filter(username=admin_username).exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=admin_username, password=password, display_name="Demo staff")
            self.stdout.write(
                self.style.WARNING(f"staff login for /admin/: {admin_username} / {password} (shown once; keep it)")
            )
        else:
            self.stdout.write(
                f"staff user {admin_username!r} exists; `manage.py changepassword {admin_username}` resets it"
            )
