"""Heartbeats: what this host's backends can do and which domains run here.

Sent every ``heartbeat_interval`` seconds, and at once after a local domain
started or stopped (:meth:`Heartbeat.poke`): an agent-registered migration
takes its source host from the newest report naming the domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from vifbroker.backends import Backend
from vifbroker.client import BrokerClient, ClientError
from vifbroker.model import BackendInfo

from .domainxml import DomainSource
from .errors import AgentError
from .metrics import AgentMetrics
from .settings import AgentSettings

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        client: BrokerClient,
        backends: Sequence[Backend],
        domains: DomainSource,
        settings: AgentSettings,
        metrics: AgentMetrics,
    ) -> None:
        self.client = client
        self.backends = list(backends)
        self.domains = domains
        self.settings = settings
        self.metrics = metrics
        self._running: list[str] = []
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Send the next heartbeat now (a local domain started or stopped)."""
        self._poked.set()

    async def run(self) -> None:
        while True:
            self._poked.clear()
            await self.send()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.heartbeat_interval):
                    await self._poked.wait()

    async def send(self) -> None:
        infos = await asyncio.gather(*(_describe(b) for b in self.backends))
        try:
            self._running = await self.domains.running()
        except AgentError as exc:  # keep the last known list rather than claim none
            log.warning("cannot list the running domains: %s", exc)
        try:
            await self.client.heartbeat(
                self.settings.host,
                infos,
                agent_version=self.settings.agent_version,
                running_domains=self._running,
            )
            self.metrics.broker_ok()
        except ClientError as exc:
            self.metrics.broker_failed()
            log.warning("heartbeat failed: %s", exc)


async def _describe(backend: Backend) -> BackendInfo:
    try:
        return await backend.describe()
    except Exception as exc:
        return BackendInfo(name=backend.name, available=False, detail=str(exc))
