"""Django database backend for the embedded PostgreSQL server: PostgreSQL, started on demand.

The first connection attempt goes straight to the socket, so a running server costs nothing.
Only when it fails is the server started (under a lock shared by all processes) and the
connection retried once.
"""

import psycopg
from django.db.backends.postgresql import base as postgresql

from core.embedded_postgres import EmbeddedPostgres


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        try:
            return super().get_new_connection(conn_params)
        except psycopg.OperationalError:
            server = EmbeddedPostgres(self.settings_dict["EMBEDDED_DATA_DIR"])
            server.ensure_running(databases=(self.settings_dict["EMBEDDED_DATABASE"],))
            return super().get_new_connection(conn_params)
