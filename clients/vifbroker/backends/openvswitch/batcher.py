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
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .transact import MAX_TXN_BYTES, Op, OpFailed, OvsdbClient, encode, first_error, transaction
from .workers import MergingWorkers, fail

log = logging.getLogger(__name__)


class TooLarge(ValueError):
    """One transaction's operations do not fit in one argv element."""


@dataclass(slots=True)
class _Job:
    ops: int
    text: str
    size: int
    future: asyncio.Future[list[Any]] = field(repr=False)


class TransactBatcher(MergingWorkers[_Job]):
    """Run write transactions on at most ``workers`` concurrent ovsdb-client processes."""

    def __init__(
        self, client: OvsdbClient, *, workers: int = 4, max_bytes: int = MAX_TXN_BYTES
    ) -> None:
        super().__init__(workers, "ovsdb-client")
        self.client = client
        self.max_bytes = max_bytes

    def fits(self, ops: Sequence[Op]) -> bool:
        return self._size(encode(ops)) <= self.max_bytes

    async def run(self, ops: Sequence[Op]) -> list[Any]:
        """Commit ``ops`` as one transaction (possibly merged with others); their results.

        :class:`OpFailed` (index within ``ops``) when one of them failed,
        :class:`TooLarge` when they do not fit in one process's argument.
        """
        self._check_open()
        text = encode(ops)
        size = self._size(text)
        if size > self.max_bytes:
            raise TooLarge(f"{size} bytes of operations, above {self.max_bytes}")
        job = _Job(len(ops), text, size, asyncio.get_running_loop().create_future())
        self._submit(job)
        return await job.future

    def _size(self, text: str) -> int:
        # bytes of the argument: UTF-8, plus the database name and brackets
        return len(text.encode("utf-8")) + len(transaction([]))

    def _merge(self) -> list[_Job]:
        group = [self._fresh.popleft()]
        size = group[0].size
        while self._fresh and size + self._fresh[0].size + 1 <= self.max_bytes:
            size += self._fresh[0].size + 1
            group.append(self._fresh.popleft())
        return group

    async def _run(self, group: list[_Job]) -> None:
        total = sum(job.ops for job in group)
        results = await self.client.transact(transaction([job.text for job in group]))
        failed = first_error(results, total)
        if failed is None:
            start = 0
            for job in group:
                if not job.future.done():
                    job.future.set_result(results[start : start + job.ops])
                start += job.ops
            return
        if len(group) == 1:
            fail(group[0], failed)
            return
        start = 0
        for at, job in enumerate(group):
            if start <= failed.index < start + job.ops:
                fail(job, OpFailed(failed.index - start, failed.error, failed.details))
                self._again(group[:at] + group[at + 1 :])
                return
            start += job.ops
        # Not one caller's operation: the commit itself. Halves, until it fails alone.
        log.info(
            "merged ovsdb transaction of %d failed (%s); retrying in halves", len(group), failed
        )
        half = len(group) // 2
        self._again(group[:half], group[half:])
