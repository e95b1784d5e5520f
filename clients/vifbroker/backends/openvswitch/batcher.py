"""Write transactions that arrive together share one ``ovsdb-client transact`` process.

An evacuation lands hundreds of domains at once; each domain's writes are
one transaction (see transact.py), and a process costs a few milliseconds
whatever it carries. So a free worker takes every transaction waiting (up to
the argv element cap) and sends them as ONE OVSDB transaction, then hands
each caller the results of its own operations.

One OVSDB transaction commits all or nothing, but the reply says which
operation failed: that caller alone gets the error (a stale row's guard), and
the others run again without it, at once. An error the reply does not pin
on an operation (the commit's own) splits the run in halves until the
transaction at fault fails alone, as the ovs-vsctl pool does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..base import BackendUnavailable
from .transact import MAX_TXN_BYTES, Op, OpFailed, OvsdbClient, encode, first_error, transaction

log = logging.getLogger(__name__)


class TooLarge(ValueError):
    """One transaction's operations do not fit in one argv element."""


@dataclass(slots=True)
class _Job:
    ops: int
    text: str
    size: int
    future: asyncio.Future[list[Any]] = field(repr=False)


class TransactBatcher:
    """Run write transactions on at most ``workers`` concurrent ovsdb-client processes."""

    def __init__(
        self, client: OvsdbClient, *, workers: int = 4, max_bytes: int = MAX_TXN_BYTES
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.client = client
        self.workers = workers
        self.max_bytes = max_bytes
        self._fresh: collections.deque[_Job] = collections.deque()
        # Groups to run as they are: the rest of a failed run, or halves of one.
        self._groups: collections.deque[list[_Job]] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def fits(self, ops: Sequence[Op]) -> bool:
        return self._size(encode(ops)) <= self.max_bytes

    async def run(self, ops: Sequence[Op]) -> list[Any]:
        """Commit ``ops`` as one transaction (possibly merged with others); their results.

        :class:`OpFailed` (index within ``ops``) when one of them failed,
        :class:`TooLarge` when they do not fit in one process's argument.
        """
        if self._closed:
            raise BackendUnavailable("openvswitch backend is closed")
        text = encode(ops)
        size = self._size(text)
        if size > self.max_bytes:
            raise TooLarge(f"{size} bytes of operations, above {self.max_bytes}")
        if not self._tasks:  # started lazily so they bind to the loop that uses them
            self._tasks = [
                asyncio.create_task(self._worker(), name=f"ovsdb-client-worker-{i}")
                for i in range(self.workers)
            ]
        job = _Job(len(ops), text, size, asyncio.get_running_loop().create_future())
        self._fresh.append(job)
        self._wake.set()
        return await job.future

    async def close(self) -> None:
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        error = BackendUnavailable("openvswitch backend closed")
        for job in [*self._fresh, *(j for group in self._groups for j in group)]:
            _settle(job, error=error)
        self._fresh.clear()
        self._groups.clear()

    # -- workers -----------------------------------------------------------------
    def _size(self, text: str) -> int:
        # bytes of the argument: UTF-8, plus the database name and brackets
        return len(text.encode("utf-8")) + len(transaction([]))

    def _take(self) -> list[_Job] | None:
        if self._groups:
            group = self._groups.popleft()
        elif self._fresh:
            group = [self._fresh.popleft()]
            size = group[0].size
            while self._fresh and size + self._fresh[0].size + 1 <= self.max_bytes:
                size += self._fresh[0].size + 1
                group.append(self._fresh.popleft())
        else:
            return None
        if self._fresh or self._groups:
            self._wake.set()  # more work: let another worker take it now
        return group

    async def _worker(self) -> None:
        while True:
            group = self._take()
            if group is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            live = [job for job in group if not job.future.done()]  # callers may have gone
            if live:
                try:
                    await self._run(live)
                except asyncio.CancelledError:
                    for job in live:
                        _settle(job, error=BackendUnavailable("openvswitch backend closed"))
                    raise
                except Exception as exc:  # server down, timeout, a bug: every caller hears it
                    for job in live:
                        _settle(job, error=exc)

    async def _run(self, group: list[_Job]) -> None:
        total = sum(job.ops for job in group)
        results = await self.client.transact(transaction([job.text for job in group]))
        failed = first_error(results, total)
        if failed is None:
            start = 0
            for job in group:
                _settle(job, results[start : start + job.ops])
                start += job.ops
            return
        if len(group) == 1:
            _settle(group[0], error=failed)
            return
        start = 0
        for at, job in enumerate(group):
            if start <= failed.index < start + job.ops:
                _settle(job, error=OpFailed(failed.index - start, failed.error, failed.details))
                self._again(group[:at] + group[at + 1 :])
                return
            start += job.ops
        # Not one caller's operation: the commit itself. Halves, until it fails alone.
        log.info(
            "merged ovsdb transaction of %d failed (%s); retrying in halves", len(group), failed
        )
        half = len(group) // 2
        self._again(group[:half], group[half:])

    def _again(self, *groups: list[_Job]) -> None:
        self._groups.extendleft(reversed([g for g in groups if g]))
        self._wake.set()


def _settle(
    job: _Job, result: list[Any] | None = None, *, error: BaseException | None = None
) -> None:
    if job.future.done():
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(result or [])
