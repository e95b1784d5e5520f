"""The store's thread hop: calls run on its own thread, in order, answering the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from vifbroker.store.hop import Hop


async def test_calls_run_in_order_on_one_other_thread() -> None:
    hop = Hop("test-hop")
    seen: list[tuple[int, str]] = []

    def call(n: int) -> int:
        seen.append((n, threading.current_thread().name))
        return n * 2

    try:
        results = await asyncio.gather(*(hop.run(lambda n=n: call(n)) for n in range(5)))
        assert results == [0, 2, 4, 6, 8]
    finally:
        hop.close()
    assert [n for n, _ in seen] == [0, 1, 2, 3, 4]
    assert {name for _, name in seen} == {"test-hop"}


async def test_an_exception_reaches_the_caller_and_the_thread_goes_on() -> None:
    hop = Hop("test-hop")

    def boom() -> None:
        raise ValueError("from the thread")

    try:
        with pytest.raises(ValueError, match="from the thread"):
            await hop.run(boom)
        assert await hop.run(lambda: "still there") == "still there"
    finally:
        hop.close()


async def test_close_waits_for_what_was_queued() -> None:
    hop = Hop("test-hop")
    release = threading.Event()
    done: list[str] = []

    def slow() -> None:
        release.wait(5)
        done.append("slow")

    waiting = asyncio.ensure_future(hop.run(slow))
    await asyncio.sleep(0)  # queued
    release.set()
    await asyncio.to_thread(hop.close)
    assert done == ["slow"]
    await waiting
