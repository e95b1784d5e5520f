"""Calls made in the same event-loop turn go to the broker as one request.

An evacuation moves hundreds of domains at once: the source's workers collect
together and upload together, the destination's apply in a few merged OVSDB
transactions and post their results together. One request per domain costs
both ends an HTTP request (and, in a burst, a connection) each. A
:class:`TurnBatcher` gathers the calls made in one loop turn into requests of
up to ``max_batch`` keys (each key at most once a request); each caller still
gets its own outcome, raised as the error its own request would have raised
(NotFound, Conflict, …), so a worker cannot tell the difference. A broker
without the grouped route (404/405 for the request itself) gets one request
per key from then on; a grouped request refused whole for another 4xx is sent
again key by key, each getting the answer its own request gets.

A grouped request also stays under ``BODY_BUDGET`` bytes where it can: the
broker reads a body up to 64 KiB (its default ``inline_body_bytes``) on its
event loop, and hands a larger one to a decoding worker process, which it
starts on first use and whose models come back pickled: several small
requests, sent at once, cost it less than one large one.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from vifbroker.client import ClientError, ProblemError

log = logging.getLogger(__name__)

#: the body size (bytes) a grouped request is kept under when it holds more than one key
BODY_BUDGET = 56 * 1024

P = TypeVar("P")
R = TypeVar("R")


@dataclass(slots=True)
class Call(Generic[P, R]):
    key: str
    payload: P
    future: asyncio.Future[R] = field(repr=False)


class TurnBatcher(abc.ABC, Generic[P, R]):
    #: keys one grouped request may carry
    max_batch: int = 1
    #: what the grouped route is, for the log line when the broker lacks it
    route: str = ""

    def __init__(self) -> None:
        #: False once the broker showed it has no grouped route
        self.bulk = True
        self._pending: list[Call[P, R]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: str, payload: P) -> R:
        """Send ``payload`` for ``key`` (with the others submitted now); raise as its own
        request would."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(Call(key, payload, future))
        if len(self._pending) == 1:
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def size(self, payload: P) -> int:
        """About how many bytes ``payload`` adds to a grouped request's body."""
        return 0

    @abc.abstractmethod
    async def send_many(self, batch: list[Call[P, R]]) -> Mapping[str, R | ProblemError]:
        """One grouped request: each key's answer, or the error its own request would raise."""

    @abc.abstractmethod
    async def send_one(self, call: Call[P, R]) -> R:
        """The request for one key alone."""

    async def _flush(self) -> None:
        # One loop turn: calls made together (workers finishing one step) join.
        await asyncio.sleep(0)
        pending, self._pending = self._pending, []
        batches: list[list[Call[P, R]]] = []
        sizes: list[int] = []
        for call in pending:  # each key at most once a request
            size = self.size(call.payload)
            for i, batch in enumerate(batches):
                if (
                    len(batch) < self.max_batch
                    and sizes[i] + size <= BODY_BUDGET
                    and all(c.key != call.key for c in batch)
                ):
                    batch.append(call)
                    sizes[i] += size
                    break
            else:
                batches.append([call])
                sizes.append(size)
        await asyncio.gather(*(self._send(batch) for batch in batches))

    async def _send(self, batch: list[Call[P, R]]) -> None:
        if not self.bulk or len(batch) == 1:
            await asyncio.gather(*(self._one(call) for call in batch))
            return
        try:
            answers = await self.send_many(batch)
        except ProblemError as exc:
            if exc.status in (404, 405):
                log.info("the broker has no %s route (%s); sending one by one", self.route, exc)
                self.bulk = False
            elif exc.status >= 500:
                _fail(batch, exc)
                return
            else:
                # Refused whole (one key's payload the broker cannot read, say): each
                # key is sent on its own, so one cannot hold up the others.
                log.warning(
                    "%s refused (%s); sending its %d one by one", self.route, exc, len(batch)
                )
            await asyncio.gather(*(self._one(call) for call in batch))
            return
        except ClientError as exc:
            _fail(batch, exc)
            return
        except BaseException as exc:
            _fail(batch, exc)
            raise
        for call in batch:
            if call.future.done():
                continue
            if call.key not in answers:
                call.future.set_exception(ClientError(f"no outcome for {call.key}"))
                continue
            got = answers[call.key]
            if isinstance(got, ProblemError):
                call.future.set_exception(got)
            else:
                call.future.set_result(got)

    async def _one(self, call: Call[P, R]) -> None:
        try:
            answer = await self.send_one(call)
        except BaseException as exc:
            if not call.future.done():
                call.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not call.future.done():
                call.future.set_result(answer)


def _fail(batch: list[Call[P, R]], exc: BaseException) -> None:
    for call in batch:
        if not call.future.done():
            call.future.set_exception(exc)
