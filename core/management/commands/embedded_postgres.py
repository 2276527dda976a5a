from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.embedded_postgres import EmbeddedPostgres


class Command(BaseCommand):
    help = "Start, stop or show the embedded PostgreSQL server (used when DATABASE_URL is unset)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status"])

    def handle(self, *args, action, **options):
        if settings.DATABASES["default"]["ENGINE"] != "core.embedded_db":
            raise CommandError("DATABASE_URL is set: this deployment does not use the embedded server")
        server = EmbeddedPostgres(settings.EMBEDDED_POSTGRES_DIR)
        if action == "start":
            status = server.ensure_running(databases=(settings.DATABASES["default"]["EMBEDDED_DATABASE"],))
            self.stdout.write(f"running pid={status.pid} socket={status.socket_dir} data={server.data_dir}")
        elif action == "stop":
            stopped = server.stop()
            self.stdout.write("stopped" if stopped else "was not running")
        else:
            status = server.status()
            state = f"running pid={status.pid}" if status.running else "not running"
            self.stdout.write(f"{state} socket={status.socket_dir} data={server.data_dir}")
