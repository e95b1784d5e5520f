"""Wake-ups for long-polls, pushed from the commit.

A store publishes ``(revision, keys)`` after each durable commit; waiters park on
the keys they care about (``host:<name>``, ``migration:<id>``, ``*``). With
thousands of idle long-polls, a commit wakes only the waiters of its keys.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from typing import Any


class ChangeHub:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[int]]] = defaultdict(set)
        self.revision = 0

    def publish(self, revision: int, keys: Iterable[str]) -> None:
        """Record ``revision`` as durable and wake every waiter on ``keys`` (and ``*``)."""
        if revision > self.revision:
            self.revision = revision
        for key in (*keys, "*"):
            waiters = self._waiters.pop(key, None)
            if not waiters:
                continue
            for fut in waiters:
                if not fut.done():
                    fut.set_result(revision)

    def wake_all(self, revision: int) -> None:
        """Record ``revision`` and wake every waiter: what changed is not known (e.g.
        notifications were lost while a replica's listener reconnected), so each
        waiter reads again from where it stood."""
        if revision > self.revision:
            self.revision = revision
        waiters, self._waiters = self._waiters, defaultdict(set)
        for futs in waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_result(revision)

    def release(self, key: str) -> None:
        """Wake every waiter on ``key`` as a timeout would (its wait returns False):
        nothing was committed for it (e.g. the server is stopping)."""
        for fut in self._waiters.pop(key, ()):
            _expire(fut)

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    def waiting_on(self, key: str) -> int:
        """How many waiters are parked on ``key`` now."""
        waiters = self._waiters.get(key)
        return 0 if waiters is None else len(waiters)

    async def wait(
        self,
        keys: Iterable[str],
        timeout: float,  # noqa: ASYNC109
        until: asyncio.Future[Any] | None = None,
    ) -> bool:
        """Wait until a commit touches one of ``keys``; False on timeout, or as soon
        as ``until`` (if given) is done — e.g. the waiting client went away."""
        if timeout <= 0 or (until is not None and until.done()):
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        keys = tuple(keys)
        for key in keys:
            self._waiters[key].add(fut)
        handle = loop.call_later(timeout, _expire, fut)

        def give_up(_: asyncio.Future[Any]) -> None:
            _expire(fut)

        if until is not None:
            until.add_done_callback(give_up)
        try:
            await fut
            return fut.result() >= 0
        finally:
            handle.cancel()
            if until is not None:
                until.remove_done_callback(give_up)
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[key]


def _expire(fut: asyncio.Future[int]) -> None:
    if not fut.done():
        fut.set_result(-1)
