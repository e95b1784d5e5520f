"""Prometheus metrics, one fresh registry per app."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from vifbroker.model import MigrationState
from vifbroker.store import Store

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "vifbroker_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.longpolls = Gauge(
            "vifbroker_open_longpolls",
            "Requests currently parked on the change hub (inbox, barrier, events).",
            registry=self.registry,
        )
        self.revision = Gauge(
            "vifbroker_store_revision", "Current store revision.", registry=self.registry
        )
        self.migrations = Gauge(
            "vifbroker_migrations",
            "Migrations by state.",
            ["state"],
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).observe(seconds)

    async def render(self, store: Store) -> bytes:
        """Refresh the store-derived gauges, then the exposition text."""
        counts = await store.count_by_state()
        for state in MigrationState:
            self.migrations.labels(state.value).set(counts.get(state, 0))
        self.revision.set(await store.current_revision())
        data: bytes = generate_latest(self.registry)
        return data
