"""A bounded pool of ovs-vsctl workers that coalesces concurrent transactions.

Every ovs-vsctl process pays a fixed cost (fork, exec, connect, download the
columns it touches) of several milliseconds; the commands themselves are
nearly free. So when many callers submit transactions at once (an evacuation:
hundreds of domains landing together), a free worker takes every transaction
waiting in the queue and runs them as ONE process, then hands each caller the
output lines of its own commands.

One ovs-vsctl process is one OVSDB transaction: if any command fails, nothing
is written. So a failed merged run is bisected: each half runs again on its
own, until the transaction at fault fails alone and the others succeed.
Failures that are not about the commands (server down, timeout) fail every
caller at once: running them separately would only fail them more slowly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass, field

from ..base import BackendError, BackendUnavailable
from .vsctl import Command, Transaction, VsctlError, VsctlRunner

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Job:
    transaction: Transaction
    future: asyncio.Future[None] = field(repr=False)


class VsctlPool:
    """Run transactions on at most ``workers`` concurrent ovs-vsctl processes."""

    def __init__(
        self,
        runner: VsctlRunner,
        *,
        workers: int = 4,
        max_batch_commands: int = 4096,
        max_batch_bytes: int = 1024 * 1024,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.runner = runner
        self.workers = workers
        self.max_batch_commands = max_batch_commands
        # Far below ARG_MAX (2 MiB + environment on Linux) on purpose.
        self.max_batch_bytes = max_batch_bytes
        self._fresh: collections.deque[_Job] = collections.deque()
        # Halves of failed merged runs: never merged again with anything else.
        self._split: collections.deque[list[_Job]] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    async def run(self, transaction: Transaction) -> None:
        """Commit ``transaction`` (possibly merged with others); fill its outputs."""
        if self._closed:
            raise BackendUnavailable("openvswitch backend is closed")
        if not transaction.commands:
            return
        self._ensure_workers()
        job = _Job(transaction, asyncio.get_running_loop().create_future())
        self._fresh.append(job)
        self._wake.set()
        await job.future

    async def close(self) -> None:
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        error = BackendUnavailable("openvswitch backend closed")
        for job in [*self._fresh, *(j for group in self._split for j in group)]:
            if not job.future.done():
                job.future.set_exception(error)
        self._fresh.clear()
        self._split.clear()

    # -- workers -----------------------------------------------------------------
    def _ensure_workers(self) -> None:
        # Started lazily so the pool binds to the loop that uses it.
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._worker(), name=f"ovs-vsctl-worker-{i}")
                for i in range(self.workers)
            ]

    async def _worker(self) -> None:
        while True:
            group = self._take()
            if group is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._run_group(group)

    def _take(self) -> list[_Job] | None:
        if self._split:
            return self._split.popleft()
        if not self._fresh:
            return None
        group = [self._fresh.popleft()]
        commands = len(group[0].transaction.commands)
        size = group[0].transaction.argv_bytes()
        while self._fresh:
            nxt = self._fresh[0].transaction
            if (
                commands + len(nxt.commands) > self.max_batch_commands
                or size + nxt.argv_bytes() > self.max_batch_bytes
            ):
                break
            group.append(self._fresh.popleft())
            commands += len(nxt.commands)
            size += nxt.argv_bytes()
        if self._fresh or self._split:
            self._wake.set()  # more work: let another worker take it now
        return group

    async def _run_group(self, group: list[_Job]) -> None:
        live = [job for job in group if not job.future.done()]  # callers may have gone
        if not live:
            return
        commands: list[Command] = [c for job in live for c in job.transaction.commands]
        try:
            await self.runner.run(commands)
        except VsctlError as exc:
            if len(live) == 1:
                _fail(live[0], exc)
                return
            half = len(live) // 2
            log.info(
                "merged ovs-vsctl run of %d transactions failed (%s); retrying in halves",
                len(live),
                exc,
            )
            self._split.extend([live[:half], live[half:]])
            self._wake.set()
            return
        except BackendError as exc:
            for job in live:
                _fail(job, exc)
            return
        except asyncio.CancelledError:
            for job in live:
                _fail(job, BackendUnavailable("openvswitch backend closed"))
            raise
        except Exception as exc:  # a bug must reach the callers, not kill the worker
            for job in live:
                _fail(job, exc)
            return
        for job in live:
            if not job.future.done():
                job.future.set_result(None)


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
