"""Results posted in the same event-loop turn go to the broker as one request.

An evacuation's destination applies hundreds of domains in a few merged OVSDB
transactions, and each domain's worker then posts its results: one request per
domain costs both ends an HTTP request (and, in a burst, a connection) each.
Posts that arrive together share ``POST /v1/hosts/{host}/results``; each
caller still gets its own migration's outcome, raised as the error its own post
would have raised (NotFound, Conflict, …), so a worker cannot tell the
difference. A broker without the route (404/405 for the request itself) gets
one post per migration from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from vifbroker.client import BrokerClient, ClientError, ProblemError
from vifbroker.model import ResultIn
from vifbroker.model.migration import MAX_RESULT_MIGRATIONS

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Post:
    migration_id: str
    results: Sequence[ResultIn]
    future: asyncio.Future[None] = field(repr=False)


class ResultsBatcher:
    def __init__(self, client: BrokerClient, host: str) -> None:
        self.client = client
        self.host = host
        #: False once the broker showed it has no host results route
        self.bulk = True
        self._pending: list[_Post] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def post(self, migration_id: str, results: Sequence[ResultIn]) -> None:
        """Post one migration's results (with others posted now); raise as its own post would."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Post(migration_id, results, future))
        if len(self._pending) == 1:
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await future

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _flush(self) -> None:
        # One loop turn: posts made together (workers finishing one merged apply) join.
        await asyncio.sleep(0)
        pending, self._pending = self._pending, []
        batches: list[list[_Post]] = []
        for post in pending:  # each migration at most once a request
            for batch in batches:
                if len(batch) < MAX_RESULT_MIGRATIONS and all(
                    p.migration_id != post.migration_id for p in batch
                ):
                    batch.append(post)
                    break
            else:
                batches.append([post])
        await asyncio.gather(*(self._send(batch) for batch in batches))

    async def _send(self, batch: list[_Post]) -> None:
        if not self.bulk or len(batch) == 1:
            await asyncio.gather(*(self._one(post) for post in batch))
            return
        try:
            taken = await self.client.post_host_results(
                self.host, [(p.migration_id, p.results) for p in batch]
            )
        except ProblemError as exc:
            if exc.status in (404, 405):
                log.info("the broker has no host results route (%s); posting one by one", exc)
                self.bulk = False
                await asyncio.gather(*(self._one(post) for post in batch))
                return
            _fail(batch, exc)
            return
        except ClientError as exc:
            _fail(batch, exc)
            return
        except BaseException as exc:
            _fail(batch, exc)
            raise
        outcome = {t.migration_id: t for t in taken}
        for post in batch:
            if post.future.done():
                continue
            got = outcome.get(post.migration_id)
            if got is None:
                post.future.set_exception(ClientError(f"no outcome for {post.migration_id}"))
            elif got.error is not None:
                post.future.set_exception(got.error)
            else:
                post.future.set_result(None)

    async def _one(self, post: _Post) -> None:
        try:
            await self.client.post_results(post.migration_id, post.results)
        except BaseException as exc:
            if not post.future.done():
                post.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not post.future.done():
                post.future.set_result(None)


def _fail(batch: list[_Post], exc: BaseException) -> None:
    for post in batch:
        if not post.future.done():
            post.future.set_exception(exc)
