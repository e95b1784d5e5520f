"""Long-polls parked on the store's change hub, never polling the store in a loop.

The pattern, race-free because the hub is published only after a commit is
visible and no ``await`` separates the revision check from parking::

    seen = hub.revision; value = await fetch()
    if not ready(value) and hub.revision == seen: park until a commit touches key

A request whose client has gone (its connection's ``disconnected`` future is
done) stops parking at once: it frees its hub waiter and the gauge, and its
handler returns what it has (aiohttp drops the answer to a closed socket).

On shutdown every parked request is woken (through a private hub key) and
answers with what it has, so the server can stop without cutting connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from vifbroker.store import ChangeHub

T = TypeVar("T")

SHUTDOWN_KEY = "vifbroker:server-shutdown"


class LongPolls:
    def __init__(self, hub: ChangeHub, gauge: Any) -> None:
        self._hub = hub
        # ``gauge`` (a prometheus Gauge) reads ``parked`` when scraped: parking
        # costs no metric update, with its lock, either way.
        gauge.set_function(lambda: self.parked)
        self.stopping = False

    @property
    def revision(self) -> int:
        return self._hub.revision

    @property
    def parked(self) -> int:
        """Requests parked now: each waits on the shutdown key too (``park``)."""
        return self._hub.waiting_on(SHUTDOWN_KEY)

    def park(
        self, key: str, seconds: float, gone: asyncio.Future[Any] | None = None
    ) -> Awaitable[bool]:
        """Wait until a commit touches ``key`` (True), or timeout / shutdown / ``gone``
        done (False). (A plain function handing back the hub's wait: no coroutine
        frame of its own for a woken poll to resume on its way to its answer.)"""
        return self._hub.wait((key, SHUTDOWN_KEY), 0.0 if self.stopping else seconds, gone)

    async def poll(
        self,
        key: str,
        seconds: float,
        fetch: Callable[[], Awaitable[T]],
        ready: Callable[[T], object],
        gone: asyncio.Future[Any] | None = None,
    ) -> T:
        """``fetch()`` until ``ready`` (true), ``seconds`` passed or ``gone`` is done; the
        last value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            seen = self._hub.revision
            value = await fetch()
            remaining = deadline - loop.time()
            if ready(value) or remaining <= 0 or self.stopping:
                return value
            if gone is not None and gone.done():
                return value
            if self._hub.revision != seen:
                continue
            await self.park(key, remaining, gone)

    def stop(self) -> None:
        self.stopping = True
        self._hub.release(SHUTDOWN_KEY)
