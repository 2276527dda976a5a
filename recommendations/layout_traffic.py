"""Traffic through the production layout's load balancer, then what each host did (`manage.py netns_layout`).

On a started core.netns_layout.NetnsLayout (every host in a network namespace of its own): the
health checks through HAProxy; a catalog sent by a staff client (one bulk upsert with an
Idempotency-Key, embedded by the bulk worker); then people, one thread each, who in every round
write a search (and every other round a review of an item they read), ask for their
recommendations, read an item, and now and then ask in free text or list the catalog. Writes are
recommendations.soak.GoodClient's: a unique text, an Idempotency-Key, retried with the same key
on a timeout or a 5xx until answered 201.

Then the reckoning, from the servers themselves (over their sockets, as an operator on the
machine reads them): every acknowledged write in the primary exactly once and embedded by the
worker (a vector per text), the people's interests and kept lists rebuilt
(recommendations.reconciliation); the replica streaming from the primary over the network and
holding every acknowledged write; the recommender's reads counted in the replica's own
statistics (pg_stat_user_tables); both web hosts answering (their access logs); and no answer
other than 200 or 201.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from catalog.models import Item, ItemVector
from core.fault_stack import http, wait_until
from core.netns_layout import NetnsLayout
from recommendations.reconciliation import Findings, reconcile
from recommendations.soak import FREE_TEXT, GoodClient, Traffic
from users.models import Activity, ActivityVector

SETTLE_SECONDS = 240
EXPECTED = {200, 201}
# Tables the recommender reads (candidates, features, lists, the person's state); the token
# look-up and the answer log are not among them. As tests/core/test_replicas.py counts them.
RECOMMENDER_TABLES = (
    "relname LIKE 'catalog_item%%' OR relname LIKE 'recommendations\\_%%' OR relname = 'users_activity'"
)
CATALOG: dict[str, tuple[tuple[str, str], ...]] = {
    "Outdoor": (
        ("Tent", "A light tent for two people, quick to pitch on windy hills."),
        ("Sleeping bag", "A warm down sleeping bag for winter camping."),
        ("Hiking boots", "Waterproof leather boots with a grippy sole for wet trails."),
        ("Rain jacket", "A breathable jacket that keeps the rain out on long walks."),
        ("Head torch", "A bright head torch for evenings at the camp."),
    ),
    "Kitchen": (
        ("Tea kettle", "A stovetop kettle that whistles when the water boils."),
        ("Green tea", "Loose-leaf green tea from the mountains, mild and fresh."),
        ("Teapot", "A glazed clay teapot for brewing green or black tea."),
        ("Chef's knife", "A sharp steel knife for chopping vegetables."),
        ("Cast iron pan", "A heavy pan that sears steak and bakes cornbread."),
    ),
    "Films": (
        ("Space odyssey", "A film about a long voyage to the outer planets."),
        ("Moon landing", "A drama about the astronauts of the first moon landing."),
        ("Ocean deep", "A documentary about creatures of the deep sea."),
        ("Detective night", "A mystery film about a detective in a rainy city."),
        ("Mountain rescue", "A thriller about a rescue team in the Alps."),
    ),
    "Books": (
        ("Stargazing guide", "A book on finding constellations with a small telescope."),
        ("Bread baking", "A cookbook of sourdough and rye bread recipes."),
        ("Garden year", "A gardener's book of what to sow and prune each month."),
        ("Trail atlas", "Maps and notes for a hundred walks in the hills."),
        ("Tea ceremony", "A short history of tea and how to brew it well."),
    ),
}
# Each title in a few editions, so the catalog has some size: 4 categories x 5 x EDITIONS items.
EDITIONS = ("", " (compact)", " (deluxe)")
SEARCHES = (
    "a warm tent for winter camping",
    "something to brew green tea",
    "a film about space travel",
    "boots for wet mountain trails",
    "a book about baking bread",
    "a knife for the kitchen",
)


def catalog_records() -> list[dict]:
    return [
        {
            "external_id": f"layout-{category.lower()}-{number}-{edition_number}",
            "title": f"{title}{edition}",
            "category": category,
            "description": description,
        }
        for category, products in CATALOG.items()
        for number, (title, description) in enumerate(products)
        for edition_number, edition in enumerate(EDITIONS)
    ]


@dataclass
class LayoutReport:
    people: int
    rounds: int
    traffic: Traffic
    traffic_seconds: float
    findings: Findings
    settle_seconds: float
    health: dict[str, int] = field(default_factory=dict)
    ready_status: str = ""
    items: int = 0
    item_vectors: int = 0
    activity_vectors: int = 0
    replica_rows: int = 0
    replica_reads: int = 0
    primary_reads: int = 0
    replica_transactions: int = 0
    streaming: list[tuple[str, str]] = field(default_factory=list)  # (client address, state) on the primary
    replica_address: str = ""
    web_requests: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(self.traffic.statuses.values())

    @property
    def unexpected(self) -> dict[int, int]:
        return {status: count for status, count in self.traffic.statuses.items() if status not in EXPECTED}

    @property
    def passed(self) -> bool:
        findings = self.findings
        return (
            self.health == {"live": 200, "ready": 200}
            and self.ready_status == "ok"
            and not self.unexpected
            and not self.traffic.given_up
            and findings.intact
            and findings.settled
            and findings.found == findings.acknowledged > 0
            and self.activity_vectors == findings.acknowledged
            and self.item_vectors == self.items > 0
            and self.replica_rows == findings.acknowledged
            and self.replica_reads > 0
            and (self.replica_address, "streaming") in self.streaming
            and len(self.web_requests) == 2
            and all(count > 0 for count in self.web_requests.values())
        )

    def lines(self) -> list[str]:
        findings = self.findings
        statuses = ", ".join(
            f"{status or 'no answer'}: {count}" for status, count in sorted(self.traffic.statuses.items())
        )
        return [
            f"health through the load balancer: live {self.health.get('live')}, ready {self.health.get('ready')} "
            f"({self.ready_status})",
            f"catalog: {self.items} items sent in one bulk upsert, {self.item_vectors} embedded by the bulk worker",
            f"traffic: {self.people} people x {self.rounds} rounds, {self.requests} requests through HAProxy "
            f"in {self.traffic_seconds:.0f} s ({self.requests / max(self.traffic_seconds, 0.001):.1f}/s)",
            f"requests by status: {statuses}; retries {self.traffic.retries}, writes given up "
            f"{len(self.traffic.given_up)}",
            "requests per web host (access logs, health checks apart): "
            + ", ".join(f"{host} {count}" for host, count in sorted(self.web_requests.items())),
            f"acknowledged writes: {findings.acknowledged}, in the primary {findings.found}, duplicated "
            f"{len(findings.duplicated)}, lost {len(findings.lost)}, vectors {self.activity_vectors}",
            f"settled in {self.settle_seconds:.0f} s: not embedded {findings.not_embedded}, stale interests "
            f"{len(findings.stale_people)}, lists behind {len(findings.lists_behind)}",
            "replication: "
            + (", ".join(f"{address} {state}" for address, state in self.streaming) or "no standby connected")
            + f"; acknowledged writes on the replica {self.replica_rows}",
            f"recommender table scans during the traffic: replica {self.replica_reads}, primary "
            f"{self.primary_reads}; transactions on the replica {self.replica_transactions} (its health probes "
            "included)",
            "PASSED" if self.passed else "FAILED",
        ]


def _scans(query) -> int:
    return int(
        query(
            "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables "  # noqa: S608 - a constant
            f"WHERE {RECOMMENDER_TABLES}"
        )[0][0]
    )


def _transactions(query, database: str) -> int:
    return int(query("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [database])[0][0])


def _web_requests(log: str, lb_address: str) -> int:
    """API requests the load balancer passed to this web host (gunicorn's access log)."""
    pattern = re.compile(rf'^{re.escape(lb_address)} .*"(GET|POST) /api/v1/(?!health/)', re.MULTILINE)
    return len(pattern.findall(log))


def layout_traffic_run(
    layout: NetnsLayout, *, people: int = 8, rounds: int = 10, log: Callable[[str], None] = print
) -> LayoutReport:
    base_url = layout.base_url
    primary, replica = layout.primary.query, layout.replica.query
    health = {name: http("GET", f"{base_url}/api/v1/health/{name}/").status for name in ("live", "ready")}
    ready = http("GET", f"{base_url}/api/v1/health/ready/")
    ready_status = ready.json().get("status", "") if ready.status == 200 else ""

    # The catalog, from a staff client through the load balancer; the bulk worker embeds it.
    label = uuid.uuid4().hex[:6]
    staff = layout.people(1, prefix=f"layout-staff-{label}", staff=True)[0][1]
    records = catalog_records()
    upsert = http(
        "POST",
        f"{base_url}/api/v1/items/bulk-upsert/",
        token=staff,
        body={"items": records},
        headers={"Idempotency-Key": str(uuid.uuid4())},
        timeout=60,
    )
    if upsert.status != 200:
        raise RuntimeError(f"the catalog upsert was answered {upsert.status}: {upsert.body[:500]!r}")
    item_count = f"SELECT count(*) FROM {Item._meta.db_table} WHERE external_id LIKE 'layout-%%'"  # noqa: S608 - a model's table
    vector_count = (
        f"SELECT count(*) FROM {ItemVector._meta.db_table} v JOIN {Item._meta.db_table} i ON i.id = v.item_id "  # noqa: S608 - models' tables
        "WHERE i.external_id LIKE 'layout-%%'"
    )
    wait_until(lambda: primary(vector_count)[0][0] >= len(records), what="the catalog embedded", seconds=300, every=1.0)
    log(f"catalog of {len(records)} items embedded")
    item_ids = [row[0] for row in primary(f"SELECT id FROM {Item._meta.db_table} WHERE external_id LIKE 'layout-%%'")]  # noqa: S608 - a model's table

    person_tokens = layout.people(people, prefix=f"layout-{label}")
    traffic = Traffic()
    clients = [GoodClient(base_url, user_id, token, traffic) for user_id, token in person_tokens]
    scans_before = _scans(replica), _scans(primary)
    transactions_before = _transactions(replica, layout.primary.database)

    def run(client: GoodClient, number: int) -> None:
        chance = random.Random(number)
        for round_number in range(rounds):
            client.write(f"layout {label} person {number} search {round_number}: {chance.choice(SEARCHES)}")
            client.read("/api/v1/recommendations/?k=10")
            item = chance.choice(item_ids)
            client.read(f"/api/v1/items/{item}/")
            if round_number % 2 == 1:
                client.write(
                    f"layout {label} person {number} review {round_number}: just what I wanted",
                    kind="review",
                    item=item,
                )
            if round_number % 3 == 0:
                client.free_text(chance.choice(FREE_TEXT))
            if round_number % 5 == 0:
                client.read("/api/v1/items/?limit=10")

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(client, number)) for number, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    traffic_seconds = time.monotonic() - started
    log(f"{sum(traffic.statuses.values())} requests in {traffic_seconds:.0f} s; settling")

    user_ids = [user_id for user_id, _token in person_tokens]
    settle_started = time.monotonic()

    def findings() -> Findings:
        return reconcile(primary, acknowledged_texts=traffic.acknowledged, user_ids=user_ids)

    result = findings()
    while not result.settled and time.monotonic() - settle_started < SETTLE_SECONDS:
        time.sleep(2)
        result = findings()
    settle_seconds = time.monotonic() - settle_started

    texts = sorted(traffic.acknowledged)
    activity_vectors = primary(
        f"SELECT count(DISTINCT a.id) FROM {Activity._meta.db_table} a "  # noqa: S608 - models' tables
        f"JOIN {ActivityVector._meta.db_table} v ON v.activity_id = a.id WHERE a.text = ANY(%s)",
        [texts],
    )[0][0]
    # The replica has replayed everything the primary wrote by now (or the count says it has not).
    target = primary("SELECT pg_current_wal_lsn()::text")[0][0]
    try:
        wait_until(
            lambda: replica("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])[0][0],
            what="the replica to replay",
            seconds=60,
        )
    except TimeoutError:
        log("the replica did not replay the primary's last position within 60 s")
    replica_rows = replica(
        f"SELECT count(*) FROM {Activity._meta.db_table} WHERE text = ANY(%s)",  # noqa: S608 - a model's table
        [texts],
    )[0][0]
    time.sleep(1)  # backends report their statistics at most once a second
    return LayoutReport(
        people=people,
        rounds=rounds,
        traffic=traffic,
        traffic_seconds=traffic_seconds,
        findings=result,
        settle_seconds=settle_seconds,
        health=health,
        ready_status=ready_status,
        items=primary(item_count)[0][0],
        item_vectors=primary(vector_count)[0][0],
        activity_vectors=activity_vectors,
        replica_rows=replica_rows,
        replica_reads=_scans(replica) - scans_before[0],
        primary_reads=_scans(primary) - scans_before[1],
        replica_transactions=_transactions(replica, layout.primary.database) - transactions_before,
        streaming=[
            (str(address), state)
            for address, state in primary("SELECT host(client_addr), state FROM pg_stat_replication")
        ],
        replica_address=layout.network.address("db-replica"),
        web_requests={host: _web_requests(layout.log(host), layout.network.address("lb")) for host in ("web1", "web2")},
    )
