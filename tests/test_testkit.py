"""The test helpers themselves: a guard that cannot fail guards nothing."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from testkit import RunqueueClock, no_loop_blocking, sigint_at_default, skip_or_fail


async def test_loop_block_guard_catches_a_blocking_call() -> None:
    with pytest.raises(pytest.fail.Exception, match="event loop was blocked"):
        async with no_loop_blocking(threshold=0.05):
            await asyncio.sleep(0)  # timing applies from the next callback on
            time.sleep(0.2)
            await asyncio.sleep(0)


async def test_loop_block_guard_passes_awaiting_code() -> None:
    async with no_loop_blocking(threshold=0.05) as guard:
        await asyncio.sleep(0.1)
    assert guard.reports == []


async def test_loop_block_guard_does_not_count_a_garbage_collection() -> None:
    """A full collection of a big heap inside a callback is the test session's, not the code's."""
    heap = [[i] for i in range(1_000_000)]  # a collection walks every one of them
    start = time.perf_counter()
    gc.collect()
    one_collection = time.perf_counter() - start
    threshold = max(one_collection / 4, 0.005)
    async with no_loop_blocking(threshold=threshold) as guard:
        await asyncio.sleep(0)
        for _ in range(4):
            gc.collect()
        await asyncio.sleep(0)
    assert guard.reports == []
    del heap


@pytest.fixture
def starved_cpu() -> Iterator[None]:
    """Pin this thread to one CPU shared with four busy loops: it gets about a fifth of it."""
    clock = RunqueueClock()
    if not clock.available:
        skip_or_fail("no /proc/self/task/<tid>/schedstat: the guard falls back to wall time")
    clock.close()
    saved = os.sched_getaffinity(0)
    cpu = min(saved)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        for burner in burners:
            os.sched_setaffinity(burner.pid, {cpu})
        os.sched_setaffinity(0, {cpu})
        yield
    finally:
        os.sched_setaffinity(0, saved)
        for burner in burners:
            burner.kill()
            burner.wait()


def _cpu_work(seconds: float) -> None:
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass


async def test_loop_block_guard_ignores_cpu_starvation(starved_cpu: None) -> None:
    # each callback runs 20 ms and sleeps 10 ms, well under the threshold; starved,
    # its wall time passes the threshold, which must not count as blocking
    deadline = time.monotonic() + 60
    async with no_loop_blocking(threshold=0.08) as guard:
        await asyncio.sleep(0)
        while not (guard.excused or guard.reports):
            assert time.monotonic() < deadline, "no callback was ever starved"
            time.sleep(0.01)
            _cpu_work(0.02)
            await asyncio.sleep(0)
    assert guard.reports == []


async def test_loop_block_guard_catches_a_blocking_call_when_starved(starved_cpu: None) -> None:
    # waiting for a CPU is excused, sleeping in a system call on the loop is not
    with pytest.raises(pytest.fail.Exception, match="event loop was blocked"):
        async with no_loop_blocking(threshold=0.08):
            await asyncio.sleep(0)
            time.sleep(0.2)
            await asyncio.sleep(0)


def _child_sigint() -> str:
    code = (
        "import signal; h = signal.getsignal(signal.SIGINT);"
        " print('ignored' if h == signal.SIG_IGN else h is signal.default_int_handler)"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_sigint_at_default_undoes_an_inherited_ignore() -> None:
    # As in a suite started in the background by a non-interactive shell.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert _child_sigint() == "ignored"  # what a child inherits otherwise
        with sigint_at_default():
            assert _child_sigint() == "True"  # Ctrl-C raises KeyboardInterrupt
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
