"""The test helpers themselves: a guard that cannot fail guards nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from testkit import no_loop_blocking


async def test_loop_block_guard_catches_a_blocking_call() -> None:
    with pytest.raises(pytest.fail.Exception, match="event loop was blocked"):
        async with no_loop_blocking(threshold=0.05):
            await asyncio.sleep(0)  # debug timing applies from the next callback on
            time.sleep(0.2)
            await asyncio.sleep(0)


async def test_loop_block_guard_passes_awaiting_code() -> None:
    async with no_loop_blocking(threshold=0.05) as guard:
        await asyncio.sleep(0.1)
    assert guard.reports == []
