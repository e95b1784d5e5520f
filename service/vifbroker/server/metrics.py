"""Prometheus metrics, one fresh registry per app: every definition lives here.

Handlers make one thin call each (``uploaded``, ``results``, ``expired``…);
what a series means is written once, in its help text. The on-call question
"is handoff working?" reads off ``vifbroker_results_total``,
``vifbroker_upload_to_applied_seconds`` and ``vifbroker_host_heartbeat_age_seconds``.

Counters count what this process saw: with several replicas, sum over them.
The upload → applied latency is measured where the upload and its result
landed on the same replica (an agent keeps talking to the replica that
answered last, so that is the common case).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE_LATEST
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from vifbroker.about import register_process_metrics
from vifbroker.model import MigrationState, ResultIn, VifStatus
from vifbroker.store import Recorded, Store, StoreError

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_HANDOFF_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
_MARGIN_BUCKETS = (-10, -1, -0.1, 0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: routes whose requests wait for a change by design: timed apart, not as latency
LONGPOLL_ROUTES = frozenset({"/v1/hosts/{host}/inbox", "/v1/events"})
#: (migration, mac, generation) upload times kept for the latency histogram
MAX_PENDING_UPLOADS = 100_000

#: a failed vif's reason, from its detail text: a short, bounded label set
FAILURE_REASONS = (
    ("digest mismatch", "digest-mismatch"),
    ("read back differs", "digest-mismatch"),
    ("no local backend", "backend-mismatch"),
    ("deadline", "deadline"),
    ("never appeared", "port-missing"),
    ("no local port", "port-missing"),
)


def failure_reason(detail: str | None) -> str:
    text = (detail or "").lower()
    for needle, reason in FAILURE_REASONS:
        if needle in text:
            return reason
    return "backend-error" if text else "unspecified"


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        register_process_metrics(r, "vifbroker_build_info", "broker")
        self.requests = Histogram(
            "vifbroker_http_request_duration_seconds",
            "HTTP request latency by route template, method and status "
            "(long-polls excluded: see vifbroker_longpoll_duration_seconds).",
            ["route", "method", "status"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.longpoll_durations = Histogram(
            "vifbroker_longpoll_duration_seconds",
            "How long long-polls (inbox, applied barrier, event stream) were held.",
            ["route"],
            buckets=(0.01, 0.1, 1, 5, 15, 30, 60, 300, 3600),
            registry=r,
        )
        self.longpolls = Gauge(
            "vifbroker_open_longpolls",
            "Requests currently parked on the change hub (inbox, barrier, events).",
            registry=r,
        )
        self.revision = Gauge("vifbroker_store_revision", "Current store revision.", registry=r)
        self.migrations = Gauge(
            "vifbroker_migrations", "Migrations by state.", ["state"], registry=r
        )
        self.uploads = Counter(
            "vifbroker_uploads",
            "Vif records uploaded (each one a new generation).",
            registry=r,
        )
        self.results_total = Counter(
            "vifbroker_results",
            "Destination results recorded, by status (applied, skipped, failed) and, "
            "for failed, a reason (digest-mismatch, backend-mismatch, port-missing, "
            "deadline, backend-error, unspecified).",
            ["status", "reason"],
            registry=r,
        )
        self.auth_failures = Counter(
            "vifbroker_auth_failures",
            "Requests refused: unauthenticated (401) or forbidden (403).",
            ["reason"],
            registry=r,
        )
        self.expiries = Counter(
            "vifbroker_expiries",
            "Migrations expired (past expires_at before completion or cancellation).",
            registry=r,
        )
        self.handoff = Histogram(
            "vifbroker_upload_to_applied_seconds",
            "Per vif: from the broker accepting an upload to the destination's "
            "applied result for that generation.",
            buckets=_HANDOFF_BUCKETS,
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "vifbroker_host_heartbeat_age_seconds",
            "Seconds since each host's agent last sent a heartbeat.",
            ["host"],
            registry=r,
        )
        self.resume_margin = Histogram(
            "vifbroker_resume_margin_seconds",
            "Per migration: how long before the guest resumed on the destination the "
            "last vif's port data was applied (negative: after).",
            buckets=_MARGIN_BUCKETS,
            registry=r,
        )
        self.late_landings = Counter(
            "vifbroker_late_landings",
            "Migrations whose port data landed (some of it) only after the guest resumed.",
            registry=r,
        )
        self.ready = Gauge(
            "vifbroker_ready",
            "1 when the store answered at the last scrape (what /readyz checks), else 0.",
            registry=r,
        )
        self.oldest_uploaded = Gauge(
            "vifbroker_oldest_uploaded_migration_age_seconds",
            "Age of the oldest migration still in state uploaded (0: none). Vifs normally "
            "land within seconds: a large value is a stuck migration.",
            registry=r,
        )
        self._uploaded_at: OrderedDict[tuple[str, str, int], float] = OrderedDict()
        # The request histogram's child per (route, method, status): ``labels()``
        # takes a lock and builds its key on every call. As many as prometheus keeps.
        self._request_children: dict[tuple[str, str, int], Histogram] = {}
        self._result_children: dict[tuple[str, str], Counter] = {}

    # thin calls from the request path

    def observe(
        self, route: str, method: str, status: int, seconds: float, *, waited: bool = False
    ) -> None:
        """One finished request; ``waited``: it asked to wait (the applied barrier)."""
        if status == 401:
            self.auth_failures.labels("unauthenticated").inc()
        elif status == 403:
            self.auth_failures.labels("forbidden").inc()
        if waited or route in LONGPOLL_ROUTES:
            # A long-poll's answer is what its client waits for (a handoff's
            # destination): it is observed once that answer is written, not before.
            asyncio.get_running_loop().call_soon(self._observe_longpoll, route, seconds)
            return
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, method, str(status))
        child.observe(seconds)

    def _observe_longpoll(self, route: str, seconds: float) -> None:
        self.longpoll_durations.labels(route).observe(seconds)

    def uploaded(self, migration_id: str, generations: Iterable[tuple[str, int]]) -> None:
        """Count uploaded ``(mac, generation)`` pairs; note when, to time their apply."""
        now = time.monotonic()
        n = 0
        for mac, generation in generations:
            n += 1
            self._uploaded_at[(migration_id, mac, generation)] = now
        self.uploads.inc(n)
        while len(self._uploaded_at) > MAX_PENDING_UPLOADS:
            self._uploaded_at.popitem(last=False)

    def results(self, recorded: Recorded, posted: Iterable[ResultIn]) -> None:
        """Count the results that changed a vif; time applied ones since their upload."""
        now = time.monotonic()
        after, prior = recorded.migration, recorded.prior
        if not prior:
            return  # wrote nothing: every result was superseded by a newer upload
        new = {v.mac: v for v in after.interfaces}
        for result in posted:
            was = prior.get(result.mac)
            vif = new.get(result.mac)
            if was is None or vif is None or vif.applied_generation != result.generation:
                continue  # superseded by a newer upload: changed nothing
            if was.status == vif.status and was.applied_generation == vif.applied_generation:
                continue  # a repeat of what was recorded
            reason = failure_reason(vif.detail) if vif.status is VifStatus.FAILED else ""
            self._result(vif.status.value, reason).inc()
            started = self._uploaded_at.pop((after.id, vif.mac, vif.generation), None)
            if vif.status is VifStatus.APPLIED and started is not None:
                self.handoff.observe(now - started)

    def _result(self, status: str, reason: str) -> Counter:
        """The results counter's child for ``status`` and ``reason`` (kept: see observe)."""
        child = self._result_children.get((status, reason))
        if child is None:
            child = self._result_children[status, reason] = self.results_total.labels(
                status, reason
            )
        return child

    def expired(self, count: int) -> None:
        if count:
            self.expiries.inc(count)

    def resumed(self, margin_seconds: float) -> None:
        """One migration's margin: the guest resumed this long after its last vif landed."""
        self.resume_margin.observe(margin_seconds)
        if margin_seconds < 0:
            self.late_landings.inc()

    async def render(self, store: Store, now: datetime) -> bytes:
        """Refresh the store-derived gauges, then the exposition text.

        A store that does not answer makes ``vifbroker_ready`` 0 and leaves the
        other store gauges as they were: the scrape itself still succeeds.
        """
        try:
            await self._refresh(store, now)
        except StoreError:
            self.ready.set(0)
        else:
            self.ready.set(1)
        data: bytes = generate_latest(self.registry)
        return data

    async def _refresh(self, store: Store, now: datetime) -> None:
        await store.ping()
        counts = await store.count_by_state()
        for state in MigrationState:
            self.migrations.labels(state.value).set(counts.get(state, 0))
        self.revision.set(await store.current_revision())
        self.heartbeat_age.clear()
        for host in await store.list_hosts():
            self.heartbeat_age.labels(host.name).set((now - host.last_seen).total_seconds())
        oldest, _ = await store.list_migrations(state=MigrationState.UPLOADED, limit=1)
        age = (now - oldest[0].created_at).total_seconds() if oldest else 0.0
        self.oldest_uploaded.set(age)
