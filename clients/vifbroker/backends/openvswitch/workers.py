"""Worker tasks that run what callers submit, merging what waits into one process.

Both ways the vsctl driver writes (ovs-vsctl for a domain too large for one
argument, ``ovsdb-client transact`` for the rest) pay a process per run
whatever it carries, so a free worker takes every job waiting that fits
(``_merge``) and runs them together (``_run``); a failed run may hand groups
back (``_again``) to run as they are, before anything new. This class owns
the queueing, the workers' lifetime and the rule that whatever a run raises
reaches every caller in it; the subclasses own merging and failure splitting.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any, Generic, Protocol, TypeVar

from ..base import BackendUnavailable


class Job(Protocol):
    @property
    def future(self) -> asyncio.Future[Any]: ...


J = TypeVar("J", bound=Job)


class MergingWorkers(Generic[J]):
    def __init__(self, workers: int, name: str) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self._name = name
        self._fresh: collections.deque[J] = collections.deque()
        # Groups to run as they are (what a failed run handed back), before anything new.
        self._groups: collections.deque[list[J]] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable("openvswitch backend is closed")

    def _submit(self, job: J) -> None:
        if not self._tasks:  # started lazily so they bind to the loop that uses them
            self._tasks = [
                asyncio.create_task(self._worker(), name=f"{self._name}-worker-{i}")
                for i in range(self.workers)
            ]
        self._fresh.append(job)
        self._wake.set()

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
            fail(job, error)
        self._fresh.clear()
        self._groups.clear()

    def _merge(self) -> list[J]:
        """The first fresh job and those after it that may run with it (taken)."""
        return [self._fresh.popleft()]

    async def _run(self, group: list[J]) -> None:
        """Run ``group`` as one process; settle each job, or hand groups to ``_again``."""
        raise NotImplementedError

    def _again(self, *groups: list[J]) -> None:
        self._groups.extendleft(reversed([g for g in groups if g]))
        self._wake.set()

    def _take(self) -> list[J] | None:
        if self._groups:
            group = self._groups.popleft()
        elif self._fresh:
            group = self._merge()
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
            if not live:
                continue
            try:
                await self._run(live)
            except asyncio.CancelledError:
                for job in live:
                    fail(job, BackendUnavailable("openvswitch backend closed"))
                raise
            except Exception as exc:  # server down, timeout, a bug: every caller hears it
                for job in live:
                    fail(job, exc)


def fail(job: Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
