"""Traffic as good clients send it, with faults on a schedule, then the reckoning (`manage.py soak`).

Clients read (recommendations, the catalog, an item, free text) and write (activities with a
unique text each, sent with an Idempotency-Key) against a whole served system of the run's own
(core.fault_stack), while faults are injected: the broker stopped and started, PostgreSQL
restarted or killed, the network to either cut, the worker killed with -9. A good client
retries a write that timed out or was answered 5xx/503, with the same key, until it is answered
201 (acknowledged) or it gives up. Afterwards the reconciliation (recommendations.reconciliation)
checks every acknowledged write is there exactly once, embedded, with its person's interest and
list rebuilt; and the figures: requests by status, and the p99 of reads outside fault windows.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from core.fault_stack import FaultStack, Response, http
from recommendations.reconciliation import Findings, reconcile

# A retry waits the server's Retry-After (capped) or this, doubling, with jitter.
FIRST_RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 5.0
WRITE_GIVE_UP_SECONDS = 120.0
# 409: the same key is still being answered (a retry overtook the first try).
RETRYABLE = {0, 409, 500, 502, 503, 504}

READ_PATHS = (
    "/api/v1/recommendations/?k=10",
    "/api/v1/items/?limit=10",
    "/catalog/",
)
FREE_TEXT = (
    "a warm tent for winter camping",
    "something to brew green tea",
    "how do I reset my password",
    "a film about space travel",
)


@dataclass
class Traffic:
    """Every request's outcome, as the clients saw it, kept under a lock (several threads)."""

    statuses: Counter[int] = field(default_factory=Counter)
    read_seconds: list[tuple[float, float, str]] = field(default_factory=list)  # (started at, seconds, path)
    acknowledged: dict[str, int] = field(default_factory=dict)  # text -> user id
    given_up: list[str] = field(default_factory=list)
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, response: Response) -> None:
        with self.lock:
            self.statuses[response.status] += 1


class GoodClient:
    """One person's client: their token, retries with the same Idempotency-Key."""

    def __init__(self, base_url: str, user_id: int, token: str, traffic: Traffic) -> None:
        self.base_url, self.user_id, self.token, self.traffic = base_url, user_id, token, traffic

    def read(self, path: str) -> Response:
        started = time.time()
        response = http("GET", self.base_url + path, token=self.token)
        self.traffic.seen(response)
        with self.traffic.lock:
            self.traffic.read_seconds.append((started, response.seconds, path.partition("?")[0]))
        return response

    def free_text(self, text: str) -> Response:
        response = http(
            "POST", f"{self.base_url}/api/v1/recommendations/text/", token=self.token, body={"text": text, "k": 5}
        )
        self.traffic.seen(response)
        return response

    def write(
        self, text: str, *, give_up_after: float = WRITE_GIVE_UP_SECONDS, kind: str = "search", item: int | None = None
    ) -> Response:
        """Record an activity with this text (a search, or a review of `item`) until it is
        acknowledged (201) or give_up_after seconds have passed."""
        key = str(uuid.uuid4())
        body: dict = {"kind": kind, "text": text} if item is None else {"kind": kind, "text": text, "item": item}
        deadline = time.monotonic() + give_up_after
        wait = FIRST_RETRY_SECONDS
        while True:
            response = http(
                "POST",
                f"{self.base_url}/api/v1/activities/create/",
                token=self.token,
                body=body,
                headers={"Idempotency-Key": key},
            )
            self.traffic.seen(response)
            if response.status == 201:
                with self.traffic.lock:
                    self.traffic.acknowledged[text] = self.user_id
                return response
            if response.status not in RETRYABLE or time.monotonic() > deadline:
                with self.traffic.lock:
                    self.traffic.given_up.append(text)
                return response
            with self.traffic.lock:
                self.traffic.retries += 1
            retry_after = response.headers.get("Retry-After", "")
            pause = min(float(retry_after), MAX_RETRY_SECONDS) if retry_after.isdigit() else wait
            time.sleep(pause * random.uniform(0.5, 1.0))
            wait = min(wait * 2, MAX_RETRY_SECONDS)


def clients_run(
    clients: list[GoodClient],
    *,
    seconds: float,
    writes_per_second: float,
    reads_per_write: int = 2,
    run_label: str = "",
    stop: threading.Event | None = None,
) -> list[threading.Thread]:
    """Start one thread per client: a write, then reads and a free-text search, at the given pace."""
    stop = stop or threading.Event()
    pace = len(clients) / writes_per_second  # seconds between one client's writes
    label = run_label or uuid.uuid4().hex[:8]
    ends_at = time.monotonic() + seconds

    def run(client: GoodClient, number: int) -> None:
        count = 0
        while time.monotonic() < ends_at and not stop.is_set():
            started = time.monotonic()
            client.write(f"soak {label} person {number} search {count}: {random.choice(FREE_TEXT)}")
            count += 1
            for _ in range(reads_per_write):
                client.read(random.choice(READ_PATHS))
            if count % 5 == 0:
                client.free_text(random.choice(FREE_TEXT))
            time.sleep(max(0.0, pace - (time.monotonic() - started)))

    threads = [
        threading.Thread(target=run, args=(client, number), daemon=True) for number, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    return threads


@dataclass(frozen=True)
class Fault:
    name: str
    start: Callable[[FaultStack], None]
    end: Callable[[FaultStack], None]


def _kill_worker(stack: FaultStack) -> None:
    stack.stop_process("worker", kill=True)


FAULTS = (
    Fault("broker stopped", lambda stack: stack.broker_server.stop(), lambda stack: stack.broker_server.start()),
    Fault("database stopped", lambda stack: stack.postgres.stop(), lambda stack: stack.postgres.start()),
    Fault("worker killed -9", _kill_worker, lambda stack: stack.start_worker()),
    Fault(
        "network to the database cut",
        lambda stack: stack.database_proxy.cut(),
        lambda stack: stack.database_proxy.heal(),
    ),
    Fault("database killed -9", lambda stack: stack.postgres.kill(), lambda stack: stack.postgres.start()),
    Fault("network to the broker cut", lambda stack: stack.broker_proxy.cut(), lambda stack: stack.broker_proxy.heal()),
    Fault("beat stopped", lambda stack: stack.stop_process("beat"), lambda stack: stack.start_beat()),
)


# Malformed requests a careless or hostile client sends during the run: each must be a 4xx.
BAD_REQUESTS: tuple[tuple[str, str, dict | None], ...] = (
    ("GET", "/api/v1/items/?limit=-1", None),
    ("GET", "/api/v1/recommendations/?k=%C2%B2", None),
    ("POST", "/api/v1/activities/create/", {"kind": "search", "text": "a\u0000b"}),
    ("POST", "/api/v1/activities/create/", {"kind": "rating", "rating": True}),
    ("POST", "/api/v1/recommendations/text/", {"text": "x" * 20_000}),
    ("GET", "/catalog/?q=%00", None),
)
# Reads this long after a fault ends still count as inside its window (reconnects, a restarted
# worker catching up): the target is about reads while nothing is broken.
RECOVERY_SECONDS = 10.0


@dataclass
class FaultWindow:
    name: str
    started: float
    ended: float = 0.0


@dataclass
class SoakReport:
    minutes: float
    clients: int
    traffic: Traffic
    windows: list[FaultWindow]
    bad_statuses: Counter[int]
    findings: Findings
    settle_seconds: float

    def _in_window(self, started: float) -> bool:
        return any(w.started <= started <= w.ended + RECOVERY_SECONDS for w in self.windows)

    def read_p99_ms(self, *, outside_faults: bool, path: str | None = None) -> float:
        seconds = sorted(
            duration
            for started, duration, read_path in self.traffic.read_seconds
            if self._in_window(started) != outside_faults and path in (None, read_path)
        )
        if not seconds:
            return 0.0
        return 1000 * seconds[min(len(seconds) - 1, int(0.99 * len(seconds)))]

    @property
    def passed(self) -> bool:
        findings = self.findings
        return (
            findings.intact
            and findings.settled
            and self.traffic.statuses[500] == 0
            and not self.traffic.given_up
            and all(400 <= status < 500 for status in self.bad_statuses)
        )

    def lines(self) -> list[str]:
        findings = self.findings
        statuses = ", ".join(
            f"{status or 'no answer'}: {count}" for status, count in sorted(self.traffic.statuses.items())
        )
        outside = sum(1 for started, _, _ in self.traffic.read_seconds if not self._in_window(started))
        paths = sorted({path for _, _, path in self.traffic.read_seconds})
        per_path = ", ".join(f"{path} {self.read_p99_ms(outside_faults=True, path=path):.0f} ms" for path in paths)
        return [
            f"soak: {self.minutes:g} min, {self.clients} clients, {sum(self.traffic.statuses.values())} requests",
            f"requests by status: {statuses}",
            f"retries: {self.traffic.retries}, writes given up: {len(self.traffic.given_up)}",
            f"bad inputs: {sum(self.bad_statuses.values())} sent, by status: "
            + ", ".join(f"{status}: {count}" for status, count in sorted(self.bad_statuses.items())),
            "faults: " + "; ".join(f"{w.name} {w.ended - w.started:.1f} s" for w in self.windows),
            f"acknowledged writes: {findings.acknowledged}, rows found: {findings.found}, "
            f"duplicated: {len(findings.duplicated)}, lost: {len(findings.lost)}",
            f"settled in {self.settle_seconds:.0f} s: not embedded {findings.not_embedded}, "
            f"stale interests {len(findings.stale_people)}, lists behind {len(findings.lists_behind)}",
            f"reads: p99 {self.read_p99_ms(outside_faults=True):.0f} ms outside fault windows ({outside} reads), "
            f"p99 {self.read_p99_ms(outside_faults=False):.0f} ms inside",
            f"reads outside fault windows, p99 by path: {per_path}",
            "PASSED" if self.passed else "FAILED",
        ]


def soak_run(
    stack: FaultStack,
    *,
    minutes: float,
    clients: int,
    writes_per_second: float,
    fault_every: float,
    fault_seconds: float,
    log: Callable[[str], None] = print,
) -> SoakReport:
    """Traffic for `minutes` on a started stack, a fault every `fault_every` seconds, then the reckoning."""
    people = stack.people(clients, prefix=f"soak-{uuid.uuid4().hex[:6]}")
    traffic = Traffic()
    good_clients = [GoodClient(stack.base_url, user_id, token, traffic) for user_id, token in people]
    for client in good_clients:  # each person asks once: their list is kept from now on
        client.read("/api/v1/recommendations/?k=10")
    traffic.statuses.clear()
    traffic.read_seconds.clear()

    seconds = minutes * 60
    stop = threading.Event()
    started = time.monotonic()
    threads = clients_run(good_clients, seconds=seconds, writes_per_second=writes_per_second, stop=stop)
    windows: list[FaultWindow] = []
    bad_statuses: Counter[int] = Counter()
    number = 0
    next_fault = started + fault_every
    next_bad = started + 5
    while time.monotonic() - started < seconds:
        now = time.monotonic()
        if now >= next_bad:
            method, path, body = BAD_REQUESTS[int(now) % len(BAD_REQUESTS)]
            bad = http(method, stack.base_url + path, token=people[0][1], body=body)
            bad_statuses[bad.status] += 1
            next_bad = now + 5
        if now >= next_fault and now - started + fault_seconds < seconds - RECOVERY_SECONDS:
            fault = FAULTS[number % len(FAULTS)]
            number += 1
            window = FaultWindow(fault.name, time.time())
            log(f"{now - started:5.0f} s  fault: {fault.name}")
            fault.start(stack)
            time.sleep(fault_seconds)
            fault.end(stack)
            window.ended = time.time()
            windows.append(window)
            log(f"{time.monotonic() - started:5.0f} s  mended: {fault.name}")
            next_fault = time.monotonic() + fault_every
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(timeout=WRITE_GIVE_UP_SECONDS + 30)

    user_ids = [user_id for user_id, _token in people]
    settle_started = time.monotonic()

    def findings():
        return reconcile(stack.postgres.query, acknowledged_texts=traffic.acknowledged, user_ids=user_ids)

    result = findings()
    while not result.settled and time.monotonic() - settle_started < 300:
        time.sleep(2)
        result = findings()
    return SoakReport(
        minutes=minutes,
        clients=clients,
        traffic=traffic,
        windows=windows,
        bad_statuses=bad_statuses,
        findings=result,
        settle_seconds=time.monotonic() - settle_started,
    )
