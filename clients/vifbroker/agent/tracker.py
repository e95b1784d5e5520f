"""What every per-migration worker shares: its dependencies and its lifecycle."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from vifbroker.client import BrokerClient
from vifbroker.model import InboxItem

from .domainxml import DomainSource
from .portwatch import PortWatch, Subscription
from .router import Router


@dataclass(frozen=True, slots=True)
class AgentSettings:
    host: str
    #: longest inbox long-poll (seconds)
    poll_wait: float = 25.0
    heartbeat_interval: float = 15.0
    #: once some ports of a domain exist, how long to wait for the rest before
    #: applying those that do (the rest follow when they appear)
    port_grace: float = 1.0
    #: on SIGTERM, how long in-flight applies and uploads may take to finish
    drain_timeout: float = 10.0
    agent_version: str | None = None


@dataclass(frozen=True, slots=True)
class Deps:
    client: BrokerClient
    router: Router
    watch: PortWatch
    domains: DomainSource
    settings: AgentSettings


class Tracker(abc.ABC):
    """One migration seen from this host, in one direction; runs as one task."""

    direction: str = ""

    def __init__(self, item: InboxItem, deps: Deps) -> None:
        self.item = item
        self.deps = deps
        self.stopping = False
        self._changed = asyncio.Event()
        #: port-watch subscriptions to wake on stop()
        self._subs: set[Subscription] = set()

    @property
    def migration_id(self) -> str:
        return self.item.migration.id

    @property
    @abc.abstractmethod
    def resume_revision(self) -> int | None:
        """An inbox revision at or before this migration's unfinished work (None: idle)."""

    def update(self, item: InboxItem) -> None:
        """A newer state of the migration arrived from the inbox."""
        if item.revision >= self.item.revision:
            self.item = item
            self._changed.set()

    def stop(self) -> None:
        """Finish what is in flight, then return from :meth:`run`."""
        self.stopping = True
        self._changed.set()
        for sub in self._subs:
            sub.wake()

    @contextlib.contextmanager
    def subscribe(self, domain_uuid: str) -> Iterator[Subscription]:
        """A port-watch subscription that :meth:`stop` wakes."""
        with self.deps.watch.subscribe(domain_uuid) as sub:
            self._subs.add(sub)
            try:
                yield sub
            finally:
                self._subs.discard(sub)

    async def wait_changed(self, within: float | None = None) -> None:
        """Until :meth:`update`/:meth:`stop` is called, or ``within`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._changed.wait()
        self._changed.clear()

    @abc.abstractmethod
    async def run(self) -> None: ...
