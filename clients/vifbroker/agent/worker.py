"""What every per-migration worker shares: its dependencies and its lifecycle."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Iterator

from vifbroker.model import InboxItem

from .portwatch import Subscription
from .settings import Deps


class Worker(abc.ABC):
    """One migration seen from this host, in one direction; runs as one task.

    A worker holds at most one port-watch subscription (:meth:`subscribe`), for
    its whole run: every event of its domain reaches it exactly once.
    """

    direction: str = ""

    def __init__(self, item: InboxItem, deps: Deps) -> None:
        self.item = item
        self.deps = deps
        self.stopping = False
        self._changed = asyncio.Event()
        #: the worker's port-watch subscription while it runs (woken on stop/update)
        self.sub: Subscription | None = None

    @property
    def migration_id(self) -> str:
        return self.item.migration.id

    @property
    def domain_uuid(self) -> str:
        return self.item.migration.domain_uuid

    @property
    @abc.abstractmethod
    def resume_revision(self) -> int | None:
        """An inbox revision at or before this migration's unfinished work (None: idle)."""

    def update(self, item: InboxItem) -> None:
        """A newer state of the migration arrived from the inbox."""
        if item.revision >= self.item.revision:
            self.item = item
            self._changed.set()
        self._wake()

    def stop(self) -> None:
        """Finish what is in flight, then return from :meth:`run`."""
        self.stopping = True
        self._changed.set()
        self._wake()

    def _wake(self) -> None:
        if self.sub is not None:
            self.sub.wake()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """The worker's one subscription to its domain's port and lifecycle events."""
        if self.sub is not None:
            raise RuntimeError("a worker subscribes once")
        with self.deps.watch.subscribe(self.item.migration.domain_uuid) as sub:
            self.sub = sub
            try:
                yield sub
            finally:
                self.sub = None

    async def wait_changed(self, within: float | None = None) -> None:
        """Until :meth:`update`/:meth:`stop` is called, or ``within`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._changed.wait()
        self._changed.clear()

    @abc.abstractmethod
    async def run(self) -> None: ...
