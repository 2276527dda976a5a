import secrets
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand

from bundles.importing import bundle_import
from bundles.management.commands._import_report import progress_bar, write_summary
from bundles.reading import bundle_open
from users.models import User

DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "demo_bundle"


class Command(BaseCommand):
    help = "Load the demo catalog (shop, video and help items, demo users and their activity) and a staff login."

    def add_arguments(self, parser):
        parser.add_argument("--admin-username", default="admin")

    def handle(self, *args, admin_username, **options):
        summary = bundle_import(source=bundle_open(DEMO_BUNDLE), progress=progress_bar)
        write_summary(self, summary, rejections_file=None)
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
