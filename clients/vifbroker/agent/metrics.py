"""The agent's Prometheus metrics and the small HTTP server that exposes them.

Off unless ``--metrics-listen HOST:PORT`` (``VIFBROKER_METRICS_LISTEN``) is
given. One registry per agent: no module-level state. The agent's code makes
one thin call per event (``applied``, ``backend_error``, ``broker_ok``…).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from vifbroker.about import register_process_metrics
from vifbroker.backends import ApplyResult

_APPLY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class AgentMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        register_process_metrics(r, "vifbroker_agent_build_info", "agent")
        self.applies = Counter(
            "vifbroker_agent_applies",
            "Vifs this host applied, by backend and outcome (applied, skipped, failed).",
            ["backend", "outcome"],
            registry=r,
        )
        self.apply_seconds = Histogram(
            "vifbroker_agent_apply_duration_seconds",
            "One backend apply call (all ready vifs of a domain in one transaction).",
            ["backend"],
            buckets=_APPLY_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "vifbroker_agent_backend_errors",
            "Errors from a backend's local state (backend=openvswitch: OVSDB / ovs-vsctl).",
            ["backend"],
            registry=r,
        )
        self.broker_up = Gauge(
            "vifbroker_agent_broker_reachable",
            "1 when the last request to the broker was answered, else 0.",
            registry=r,
        )
        self.broker_errors = Counter(
            "vifbroker_agent_broker_errors",
            "Inbox polls and heartbeats that no broker URL answered.",
            registry=r,
        )
        self.last_contact = Gauge(
            "vifbroker_agent_broker_last_contact_timestamp_seconds",
            "Unix time of the broker's last answer.",
            registry=r,
        )
        self.queue = Gauge(
            "vifbroker_agent_queue_depth",
            "Migrations this agent is working on (one worker each).",
            registry=r,
        )

    def applied(self, backend: str, results: Sequence[ApplyResult], seconds: float) -> None:
        self.apply_seconds.labels(backend).observe(seconds)
        for result in results:
            self.applies.labels(backend, result.outcome.value).inc()

    def backend_error(self, backend: str) -> None:
        self.backend_errors.labels(backend).inc()

    def broker_ok(self) -> None:
        self.broker_up.set(1)
        self.last_contact.set(time.time())

    def broker_failed(self) -> None:
        self.broker_up.set(0)
        self.broker_errors.inc()

    def track_queue(self, depth: Callable[[], int]) -> None:
        self.queue.set_function(lambda: float(depth()))

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


@contextlib.asynccontextmanager
async def metrics_server(metrics: AgentMetrics, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``GET /metrics`` on host:port while the block runs; yields the bound port."""

    async def handler(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        yield int(sockets[0].getsockname()[1]) if sockets else port
    finally:
        await runner.cleanup()
