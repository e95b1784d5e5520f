"""Shared test helpers. Import them from here (``from testkit import …``), never
from ``conftest``: several conftest.py files exist and the name is ambiguous.

``require_binary`` skips a test on a developer machine that lacks a binary, but
fails it where ``VIFBROKER_TEST_STRICT`` (set by .ci/run) or ``CI`` is set: in CI
every test that needs ovsdb-server or libvirt must really run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
# A copy of ../shared/corpus/libvirt (LGPL data, see its README), so a clone is self-contained.
CORPUS = REPO / "tests" / "corpus" / "libvirt"

STRICT = bool(os.environ.get("VIFBROKER_TEST_STRICT") or os.environ.get("CI"))


def skip_or_fail(msg: str) -> NoReturn:
    """Skip the test for a missing prerequisite; in strict mode (CI) fail it instead."""
    if STRICT:
        pytest.fail(msg + " (strict mode: VIFBROKER_TEST_STRICT/CI set)")
    pytest.skip(msg)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mac(n: int) -> str:
    """A MAC in libvirt's 52:54:00 range, distinct for every ``n`` below 2**24."""
    return f"52:54:00:{(n >> 16) & 0xFF:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}"


def require_binary(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        skip_or_fail(f"missing binaries: {', '.join(missing)}")


@contextlib.contextmanager
def sigint_at_default() -> Iterator[None]:
    """Children spawned inside the block get SIGINT at its default, as a terminal's
    foreground job has it, so a test can stop one the way Ctrl-C does.

    A test run started in the background by a non-interactive shell (a CI runner,
    ``scripts/test &``) has SIGINT ignored; an ignored signal stays ignored across
    exec, and Python then leaves it so: ``asyncio.run`` installs no handler and the
    child never sees the SIGINT a test sends. A handled signal is reset to the
    default on exec, so handling it here for the spawn is enough. (Call from the
    main thread, as signal.signal requires; the loop's tests run there.)
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


async def wait_until(
    predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


class RunqueueClock:
    """Nanoseconds the calling thread has spent runnable but waiting for a CPU.

    Linux keeps it per thread in /proc/self/task/<tid>/schedstat ("<on-cpu ns>
    <runqueue-wait ns> <timeslices>"). Where that file is missing the clock stands
    still, so callers measuring ``wall - runqueue wait`` fall back to the wall clock.
    """

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(
                f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY
            )
        except OSError:
            self._fd = None

    @property
    def available(self) -> bool:
        return self._fd is not None

    def ns(self) -> int:
        # pread at offset 0 makes the kernel render the file afresh: one syscall per reading
        return 0 if self._fd is None else int(os.pread(self._fd, 64, 0).split()[1])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LoopBlockGuard:
    """Times every callback the guarded loop runs and keeps those that blocked it.

    A callback blocks the loop for the time it ran on the CPU plus the time it
    slept in a system call (a sync sleep, a commit or fsync on the loop): its wall
    time minus the time it was runnable but waiting for a CPU. That difference
    makes the guard blind to a starved test process (a loaded machine) yet not to
    a blocking call. The seam is ``asyncio.Handle._run``, wrapped for the loop's
    thread only while the guard is installed.

    A full garbage collection that happens to start inside a callback is not
    counted either: late in a long suite it walks every object the whole test
    session has accumulated (hundreds of ms), which says nothing about the code
    under test. ``gc.callbacks`` times each collection on the loop's thread.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.reports: list[str] = []
        # callbacks whose wall time alone reached the threshold: starved, not blocking
        self.excused = 0
        self.runqueue = RunqueueClock()
        self._gc_ns = 0
        self._gc_start = 0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter_ns()
        if phase == "start":
            self._gc_start = now
        elif self._gc_start:
            self._gc_ns += now - self._gc_start
            self._gc_start = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = asyncio.Handle._run
        loop_thread = threading.get_ident()
        limit = int(self.threshold * 1e9)
        waited = self.runqueue.ns
        collected = lambda: self._gc_ns  # noqa: E731

        def timed_run(handle: asyncio.Handle) -> None:
            if threading.get_ident() != loop_thread:
                original(handle)
                return
            wait0, gc0 = waited(), collected()
            t0 = time.perf_counter_ns()
            original(handle)
            wall = time.perf_counter_ns() - t0
            if wall < limit:
                return
            blocked = wall - (waited() - wait0) - (collected() - gc0)
            if blocked < limit:
                self.excused += 1
            else:
                self.reports.append(
                    f"Executing {_describe(handle)} took {blocked / 1e9:.3f} s"
                    f" (wall {wall / 1e9:.3f} s)"
                )

        asyncio.Handle._run = timed_run  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)
        try:
            yield
        finally:
            gc.callbacks.remove(self._on_gc)
            asyncio.Handle._run = original  # type: ignore[method-assign]
            self.runqueue.close()


def _describe(handle: asyncio.Handle) -> str:
    """A task's repr for a task step (it names the coroutine), else the handle's."""
    owner = getattr(getattr(handle, "_callback", None), "__self__", None)
    return repr(owner) if isinstance(owner, asyncio.Task) else repr(handle)


@contextlib.asynccontextmanager
async def no_loop_blocking(threshold: float = 0.25) -> AsyncIterator[LoopBlockGuard]:
    """Fail the test if any callback blocks the running loop for ``threshold`` seconds.

    Blocking means running or sleeping in a system call, not waiting for a CPU
    (see ``LoopBlockGuard``), so a busy machine does not fail the test while a
    blocking call (a sync sleep, a database commit on the loop) still shows.
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.BaseEventLoop):
        raise TypeError(f"no_loop_blocking times asyncio's own loop, not {type(loop).__name__}")
    guard = LoopBlockGuard(threshold)
    with guard.installed():
        yield guard
    if guard.reports:
        pytest.fail("the event loop was blocked:\n" + "\n".join(guard.reports))
