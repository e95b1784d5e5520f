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
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: How a call's outcome reaches the loop: ``done(result, None)`` or ``done(None, exc)``.
Done = Callable[[Any, BaseException | None], None]
_Call = tuple[asyncio.AbstractEventLoop, Callable[[], Any], Done]


class Hop:
    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the thread (started on first use); its result or its exception."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.submit(fn, functools.partial(_settle, fut))
        return await fut

    def submit(self, fn: Callable[[], Any], done: Done) -> None:
        """Run ``fn()`` on the thread; then ``done`` is called on the running loop with
        its result (and None), or with None and the exception it raised. No future
        and no task: the SQLite writer hands its COMMIT over this way."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        self._calls.put((asyncio.get_running_loop(), fn, done))

    def close(self) -> None:
        """Stop the thread once the calls queued before are done (blocks until then)."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, fn, done = call
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, whatever it is
                _answer(loop, done, None, exc)
            else:
                _answer(loop, done, result, None)


def _answer(
    loop: asyncio.AbstractEventLoop, done: Done, result: Any, exc: BaseException | None
) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        loop.call_soon_threadsafe(done, result, exc)


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)
