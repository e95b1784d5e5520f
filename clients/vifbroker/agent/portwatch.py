"""Fans each backend's ``watch()`` stream out to the migrations that care.

Every backend's stream is read by one task; events go to the subscribers of
the event's domain. A stream that fails is restarted with backoff; one that
simply ends (the backend has no feed) is not. The local libvirt's lifecycle
events (a :class:`.lifecycle.DomainFeed`, when there is one) reach the same
subscribers: they are kept in :attr:`Subscription.lifecycle` and wake ``get()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

from vifbroker.backends import Backend, PortEvent
from vifbroker.model import normalize_uuid

from .lifecycle import DomainEvent, DomainFeed
from .retry import Backoff

log = logging.getLogger(__name__)


class Subscription:
    """Events of one domain, in order."""

    def __init__(self, domain_uuid: str) -> None:
        self.domain_uuid = domain_uuid
        self.queue: asyncio.Queue[PortEvent | None] = asyncio.Queue()
        #: lifecycle events of the domain not yet taken (see :meth:`take_lifecycle`)
        self.lifecycle: list[DomainEvent] = []

    def take_lifecycle(self) -> list[DomainEvent]:
        events, self.lifecycle = self.lifecycle, []
        return events

    async def get(self, within: float | None = None) -> PortEvent | None:
        """The next event; None when ``within`` seconds pass without one or on :meth:`wake`."""
        if within is None:
            return await self.queue.get()
        try:
            async with asyncio.timeout(max(0.0, within)):
                return await self.queue.get()
        except TimeoutError:
            return None

    def wake(self) -> None:
        """Make the pending (or next) :meth:`get` return None."""
        self.queue.put_nowait(None)

    def drain(self) -> list[PortEvent]:
        events = []
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event is not None:
                events.append(event)
        return events


class PortWatch:
    def __init__(self, backends: Sequence[Backend], feed: DomainFeed | None = None) -> None:
        self._backends = list(backends)
        self._feed = feed
        self._subs: dict[str, set[Subscription]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        #: called with every lifecycle event of any domain (before the subscribers)
        self.listeners: list[Callable[[DomainEvent], None]] = []

    def start(self) -> None:
        for backend in self._backends:
            self._tasks.append(
                asyncio.create_task(self._follow(backend), name=f"watch-{backend.name}")
            )
        if self._feed is not None:
            self._tasks.append(
                asyncio.create_task(self._follow_feed(self._feed), name="watch-domains")
            )

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @contextlib.contextmanager
    def subscribe(self, domain_uuid: str) -> Iterator[Subscription]:
        sub = Subscription(normalize_uuid(domain_uuid))
        self._subs.setdefault(sub.domain_uuid, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(sub.domain_uuid)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.domain_uuid]

    def publish(self, event: PortEvent) -> None:
        try:
            key = normalize_uuid(event.domain_uuid)
        except ValueError:
            return
        for sub in self._subs.get(key, ()):
            sub.queue.put_nowait(event)

    def notify(self, event: DomainEvent) -> None:
        for listener in self.listeners:
            listener(event)
        for sub in self._subs.get(event.domain_uuid, ()):
            sub.lifecycle.append(event)
            sub.wake()

    async def _follow_feed(self, feed: DomainFeed) -> None:
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                async for event in feed.events():
                    backoff.reset()
                    log.debug("domain %s: %s %s", event.domain_uuid, event.event, event.detail)
                    self.notify(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("domain events failed (%s); subscribing again", exc)
            await asyncio.sleep(backoff.next())

    async def _follow(self, backend: Backend) -> None:
        backoff = Backoff(0.1, 5.0)
        while True:
            seen = False
            try:
                async for event in backend.watch():
                    seen = True
                    backoff.reset()
                    self.publish(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next()
                log.warning(
                    "backend %s: port watch failed (%s); restarting in %.1fs",
                    backend.name,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if not seen:
                log.debug("backend %s has no port feed", backend.name)
                return
            # A feed that ended after delivering events (monitor restarted): follow again.
            await asyncio.sleep(backoff.next())
