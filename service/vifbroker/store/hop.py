"""A thread that runs blocking calls for the event loop, one at a time.

``loop.run_in_executor`` on a ThreadPoolExecutor does this with a good deal of
Python on both sides of each call (a concurrent future with its lock and
condition, a work item, an idle-thread semaphore, a chained asyncio future).
The SQLite writer hands its thread one COMMIT per batch, and on a busy
process every line the thread runs holding the GIL is a line the event loop
waits for (profiled: ThreadPoolExecutor.submit was ~12% of the loop's samples
under bench_upload). Here the thread takes a call from a SimpleQueue, runs it
and answers the loop's future through ``call_soon_threadsafe``: nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class Hop:
    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the thread (started on first use); its result or its exception."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, fut, fn))
        return await fut

    def close(self) -> None:
        """Stop the thread once the calls queued before are done (blocks until then)."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, fut, fn = call
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, whatever it is
                _answer(loop, _fail, fut, exc)
            else:
                _answer(loop, _done, fut, result)


def _answer(
    loop: asyncio.AbstractEventLoop,
    how: Callable[[asyncio.Future[Any], Any], None],
    fut: asyncio.Future[Any],
    value: Any,
) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        loop.call_soon_threadsafe(how, fut, value)


def _done(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
