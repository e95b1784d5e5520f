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
import logging
from dataclasses import dataclass, field

from .vsctl import Command, Transaction, VsctlError, VsctlRunner
from .workers import MergingWorkers, fail

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Job:
    transaction: Transaction
    future: asyncio.Future[None] = field(repr=False)


class VsctlPool(MergingWorkers[_Job]):
    """Run transactions on at most ``workers`` concurrent ovs-vsctl processes."""

    def __init__(
        self,
        runner: VsctlRunner,
        *,
        workers: int = 4,
        max_batch_commands: int = 4096,
        max_batch_bytes: int = 1024 * 1024,
    ) -> None:
        super().__init__(workers, "ovs-vsctl")
        self.runner = runner
        self.max_batch_commands = max_batch_commands
        # Far below ARG_MAX (2 MiB + environment on Linux) on purpose.
        self.max_batch_bytes = max_batch_bytes

    async def run(self, transaction: Transaction) -> None:
        """Commit ``transaction`` (possibly merged with others); fill its outputs."""
        self._check_open()
        if not transaction.commands:
            return
        job = _Job(transaction, asyncio.get_running_loop().create_future())
        self._submit(job)
        await job.future

    def _merge(self) -> list[_Job]:
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
        return group

    async def _run(self, group: list[_Job]) -> None:
        commands: list[Command] = [c for job in group for c in job.transaction.commands]
        try:
            await self.runner.run(commands)
        except VsctlError as exc:
            if len(group) == 1:
                fail(group[0], exc)
                return
            half = len(group) // 2
            log.info(
                "merged ovs-vsctl run of %d transactions failed (%s); retrying in halves",
                len(group),
                exc,
            )
            self._again(group[:half], group[half:])
            return
        for job in group:
            if not job.future.done():
                job.future.set_result(None)
