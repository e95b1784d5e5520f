"""Shared test helpers. Import them from here (``from testkit import …``), never
from ``conftest``: several conftest.py files exist and the name is ambiguous.

``require_binary`` skips a test on a developer machine that lacks a binary, but
fails it where ``VIFBROKER_TEST_STRICT`` (set by .ci/run) or ``CI`` is set: in CI
every test that needs ovsdb-server or libvirt must really run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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


class LoopBlockGuard(logging.Handler):
    """Collects asyncio's debug-mode reports of callbacks that held the loop too long."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing") and " took " in message:
            self.reports.append(message)


@contextlib.asynccontextmanager
async def no_loop_blocking(threshold: float = 0.25) -> AsyncIterator[LoopBlockGuard]:
    """Fail the test if any callback blocks the running loop for ``threshold`` seconds.

    The threshold is generous on purpose: a shared 2-core CI machine must not
    turn scheduling noise into failures, while a blocking call (a sync sleep, a
    database commit on the loop) still shows.
    """
    loop = asyncio.get_running_loop()
    guard = LoopBlockGuard()
    logger = logging.getLogger("asyncio")
    was_debug, was_slow = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    loop.slow_callback_duration = threshold
    logger.addHandler(guard)
    try:
        yield guard
    finally:
        logger.removeHandler(guard)
        loop.set_debug(was_debug)
        loop.slow_callback_duration = was_slow
    if guard.reports:
        pytest.fail("the event loop was blocked:\n" + "\n".join(guard.reports))
