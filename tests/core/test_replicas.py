"""Read replicas against a real streaming replica (issue #15, item 1; core.replicas).

The module's own system (core.fault_stack): a PostgreSQL primary, a hot standby made from it
with pg_basebackup and replaying its WAL, each behind a TCP proxy, a Redis for the shared cache,
and gunicorn with DATABASE_URL and DATABASE_REPLICA_URLS set as a deployment sets them. Both
servers log every statement, so what reached which server is read from its own log; the
replica's statistics (pg_stat_database) confirm it. No worker runs: the recommendations read
what the requests themselves write.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from core.fault_stack import DATABASE_NAME, FaultStack, free_port, http, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 40
# Statements of the recommender's reads name these tables; the token look-up (authtoken_token,
# users_user) and the answer log's INSERTs do not match.
RECOMMENDER_TABLES = re.compile(r"\b(catalog_item\w*|recommendations_\w+|users_activity)\b")
STATEMENT = re.compile(r"LOG:  (?:statement|execute [^:]*): ")
# A write, also as the answer log's one statement (WITH ... INSERT).
WRITES = re.compile(
    r"^\s*(INSERT|UPDATE|DELETE)\b|^\s*WITH\b.*\b(INSERT INTO|UPDATE|DELETE FROM)\b", re.IGNORECASE | re.DOTALL
)


@pytest.fixture(scope="module")
def stack():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    folder = Path(tempfile.mkdtemp(prefix="recommender-replicas-"))
    stack = FaultStack(
        folder,
        web_workers=1,
        replicas=1,
        postgres_settings={"log_statement": "all", "log_min_duration_statement": "-1"},
        environment={
            "RECOMMENDER_ENCODER_MODEL": "all-MiniLM-L6-v2",
            "GUNICORN_THREADS": "4",
            "DATABASE_REPLICA_RETRY_SECONDS": "1",
        },
    )
    try:
        stack.start_servers()
        stack.manage(
            "shell",
            "-c",
            "from catalog.models import Item\n"
            "from catalog.services import item_save\n"
            f"for number in range({ITEMS}):\n"
            "    item_save(item=Item(external_id=f'tent-{number}', title=f'Tent {number}',"
            " category='Outdoor', description=f'A tent for {number % 4 + 1} people.'))\n",
        )
        stack.manage("embed", "--pending")
        stack.start_web()
        wait_until(
            lambda: http("GET", f"{stack.base_url}/api/v1/health/ready/", timeout=60).status == 200,
            what="the web process ready (encoder loaded)",
            seconds=300,
            every=1.0,
        )
        stack.pool = stack.people(6, prefix="replica")
        _caught_up(stack)
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _replica(stack: FaultStack):
    return stack.replica_servers[0]


def _caught_up(stack: FaultStack) -> None:
    """Until the replica has replayed everything the primary has written so far."""
    target = stack.postgres.query("SELECT pg_current_wal_lsn()::text")[0][0]
    wait_until(
        lambda: _replica(stack).query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])[0][0],
        what="the replica to replay the primary's WAL",
        seconds=60,
    )


class ServerLog:
    """The statements one server logged from the moment of the mark on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = path.stat().st_size

    def statements(self) -> list[str]:
        with open(self.path, "rb") as log:
            log.seek(self.start)
            text = log.read().decode(errors="replace")
        # One entry per logged statement and its continuation lines (multi-line SQL); a
        # statement bound on the server is logged as "execute <name>: ...".
        entries = re.split(r"\n(?=\d{4}-\d\d-\d\d )", text)
        found = (STATEMENT.search(entry) for entry in entries)
        return [entry[match.end() :] for entry, match in zip(entries, found, strict=True) if match]

    def recommender_reads(self) -> list[str]:
        return [
            statement
            for statement in self.statements()
            if RECOMMENDER_TABLES.search(statement) and not WRITES.match(statement)
        ]

    def writes(self) -> list[str]:
        return [statement for statement in self.statements() if WRITES.match(statement)]


def _logs(stack: FaultStack) -> tuple[ServerLog, ServerLog]:
    time.sleep(0.3)  # what was logged before this moment belongs to the step before
    return ServerLog(stack.postgres.server.log_file), ServerLog(_replica(stack).server.log_file)


def _recommendations(stack: FaultStack, token: str, k: int = 5):
    answer = http("GET", f"{stack.base_url}/api/v1/recommendations/?k={k}", token=token, timeout=30)
    assert answer.status == 200, (answer.status, answer.body[:500], stack.log("web")[-3000:])
    return answer


def _replica_tuples_returned(stack: FaultStack) -> int:
    rows = _replica(stack).query("SELECT tup_returned FROM pg_stat_database WHERE datname = %s", [DATABASE_NAME])
    return int(rows[0][0])


def test_the_recommenders_reads_reach_the_replica_and_never_the_primary(stack):
    (_user_id, token), *_ = stack.pool
    item_id = stack.postgres.query("SELECT id FROM catalog_item ORDER BY id LIMIT 1")[0][0]
    tuples_before = _replica_tuples_returned(stack)
    primary_log, replica_log = _logs(stack)

    for _ in range(5):
        _recommendations(stack, token)
    similar = http("GET", f"{stack.base_url}/api/v1/items/{item_id}/similar/?k=5", timeout=30)
    text = http("POST", f"{stack.base_url}/api/v1/recommendations/text/", body={"text": "a tent for two"}, timeout=30)
    time.sleep(0.5)

    assert similar.status == 200 and text.status == 200, (similar.body[:300], text.body[:300])
    # The person made no write: every read of the recommender was served by the replica...
    assert primary_log.recommender_reads() == []
    assert replica_log.recommender_reads()
    # ...and every write (the answer log) by the primary; the replica never saw one.
    assert any("recommendations_recommendation" in statement for statement in primary_log.writes())
    assert replica_log.writes() == []
    # The replica's own statistics count the rows it returned to those reads.
    wait_until(
        lambda: _replica_tuples_returned(stack) > tuples_before,
        what="the replica's statistics to count the reads",
        seconds=30,
        every=0.5,
    )
    # The vector index came by replication: it is there, and the replica built nothing.
    indexes = _replica(stack).query("SELECT indexdef FROM pg_indexes WHERE tablename = 'catalog_itemvector'")
    assert any("hnsw" in definition for (definition,) in indexes), indexes
    assert not any("CREATE INDEX" in statement for statement in replica_log.statements())


def test_a_person_sees_their_own_new_activity_at_once_while_the_replica_lags(stack):
    (_writer_id, writer_token), (_other_id, other_token) = stack.pool[1], stack.pool[2]
    top = _recommendations(stack, writer_token).json()["results"][0]["item"]["id"]
    _caught_up(stack)
    # The replica stops replaying: it serves what it has, and falls behind every new write.
    _replica(stack).query("SELECT pg_wal_replay_pause()")
    try:
        created = http(
            "POST",
            f"{stack.base_url}/api/v1/activities/create/",
            token=writer_token,
            body={"kind": "purchase", "item": top},
        )
        assert created.status == 201, created.body[:300]
        activity_id = created.json()["activities"][0]["id"]
        # The replica really does not have the purchase.
        assert _replica(stack).query("SELECT count(*) FROM users_activity WHERE id = %s", [activity_id]) == [(0,)]
        primary_log, replica_log = _logs(stack)

        after = _recommendations(stack, writer_token, k=20).json()

        # The person who bought it is answered from the primary, which has the purchase: the
        # item they bought is no longer recommended to them.
        assert top not in [result["item"]["id"] for result in after["results"]]
        assert primary_log.recommender_reads()
        assert replica_log.recommender_reads() == []

        # Someone who wrote nothing is still read from the lagging replica.
        primary_log, replica_log = _logs(stack)
        _recommendations(stack, other_token)
        assert primary_log.recommender_reads() == []
        assert replica_log.recommender_reads()
    finally:
        _replica(stack).query("SELECT pg_wal_replay_resume()")

    # Once the replica has replayed the purchase, it serves the writer again, inside the window.
    wait_until(
        lambda: _replica(stack).query("SELECT count(*) FROM users_activity WHERE id = %s", [activity_id]) == [(1,)],
        what="the replica to replay the purchase",
        seconds=30,
    )
    primary_log, replica_log = _logs(stack)
    again = _recommendations(stack, writer_token, k=20).json()
    assert top not in [result["item"]["id"] for result in again["results"]]
    assert primary_log.recommender_reads() == []
    assert replica_log.recommender_reads()


def test_a_stopped_replica_is_skipped_without_errors_and_used_again_when_back(stack):
    (_user_id, token) = stack.pool[3]
    _caught_up(stack)
    _replica(stack).stop()
    try:
        primary_log, _replica_log = _logs(stack)
        started = time.monotonic()
        for _ in range(10):
            _recommendations(stack, token)  # asserts 200 each time
        elapsed = time.monotonic() - started
        ready = http("GET", f"{stack.base_url}/api/v1/health/ready/", timeout=30)

        assert primary_log.recommender_reads()
        # One failed probe per retry period (1 s here), never a connect timeout per request.
        assert elapsed < 20, elapsed
        assert ready.status == 200 and ready.json()["status"] == "degraded", ready.body[:500]
        assert ready.json()["checks"]["replicas"]["replicas"]["replica_1"]["ok"] is False
        assert "replica replica_1 does not answer" in stack.log("web")
    finally:
        _replica(stack).start()

    def served_by_the_replica_again() -> bool:
        _primary_log, replica_log = _logs(stack)
        _recommendations(stack, token)
        return bool(replica_log.recommender_reads())

    wait_until(served_by_the_replica_again, what="reads back on the replica", seconds=30, every=1.0)


def test_a_replica_that_does_not_answer_at_start_up_is_logged_and_the_primary_used(stack):
    # A port nobody listens on: the process starts, says so, and reads from the primary.
    environment = {
        **stack.env(),
        "DATABASE_REPLICA_URLS": f"postgres://postgres@127.0.0.1:{free_port()}/{DATABASE_NAME}",
        "DJANGO_LOG_LEVEL": "INFO",
    }
    script = (
        "import django; django.setup()\n"
        "from core.replicas import replica_choose, replicas_probe_at_start\n"
        "print('PROBED', replicas_probe_at_start())\n"
        "print('CHOSEN', replica_choose(user_id=None))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "PROBED {'replica_1': False}" in result.stdout
    assert "CHOSEN default" in result.stdout
    assert "replica replica_1 does not answer" in result.stderr
