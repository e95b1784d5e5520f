"""Connections, group commit and cross-replica wake-ups for the PostgreSQL store.

Writes queue up on the event loop; one writer task per replica takes
everything queued and runs it as ONE transaction, each operation in its own
savepoint (a refused one rolls back alone), then commits once — concurrent
uploads share commits, as with SQLite.

Every write transaction first takes one advisory lock (``WRITE_LOCK``), so the
replicas' transactions commit one after another and take revisions from the
``revisions`` sequence in commit order: a reader that has seen revision N has
seen everything below N, and resuming ``after=N`` skips nothing. The same lock
makes expiry and pruning safe when every replica runs them: the second finds
nothing left to do.

Each commit ends with ``pg_notify`` naming its revision and hub keys; every
replica LISTENs on its own connection and wakes its long-polls. A replica
whose listener lost its connection reconnects and then wakes every parked
long-poll, which reads again from its own position: no wake-up is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

from .batching import Rerun, Ungroup, WriteQueue, group_at
from .errors import InvalidInput, StoreError, StoreUnavailable
from .hub import ChangeHub
from .postgres_schema import WRITE_LOCK

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A connection as operations see it: the pool hands out proxies.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
CHANNEL = "vifbroker"
#: How the LISTEN connections show in pg_stat_activity.
LISTENER_NAME = "vifbroker-listener"
_NOTIFY_MAX = 7000  # bytes; PostgreSQL's payload limit is 8000
#: Driver and network errors that mean "the database cannot be reached now".
UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.ReadOnlySQLTransactionError,
)


@dataclass
class WriteContext:
    """Per-batch state handed to write operations."""

    conn: Conn
    keys: set[str] = field(default_factory=set)
    revision: int = 0  # the newest revision this batch took

    async def next_revision(self) -> int:
        # The write lock is held: nobody else draws from the sequence until the
        # commit, so the batch takes one value and counts on from it (the
        # sequence is set to the last one at the end).
        if self.revision == 0:
            self.revision = int(await self.conn.fetchval("SELECT nextval('revisions')"))
        else:
            self.revision += 1
        return self.revision


#: Runs consecutive operations of one function together: their keyword
#: arguments in, one result (or the StoreError it refused with) per operation out.
GroupRunner = Callable[[Conn, "WriteContext", list[dict[str, Any]]], Awaitable[list[Any]]]


WriteOp = Callable[[Conn, WriteContext], Awaitable[T]]


@contextlib.asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Turn driver errors into store errors (the boundary of the database)."""
    try:
        yield
    except StoreError:
        raise
    except asyncpg.DataError as exc:
        raise InvalidInput(f"{what}: the database refused a value: {exc}") from exc
    except (*UNREACHABLE, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"{what} failed: {type(exc).__name__}: {exc}") from exc


class PgEngine:
    def __init__(
        self,
        dsn: str,
        hub: ChangeHub,
        *,
        timeout: float = 10.0,
        groups: Mapping[Callable[..., Any], GroupRunner] | None = None,
    ) -> None:
        self._dsn = dsn
        self._groups = dict(groups or {})
        self._hub = hub
        self.timeout = timeout
        self.replica = uuid.uuid4().hex  # to tell our own notifications from others'
        self._pool: asyncpg.Pool | None = None
        self._queue: WriteQueue[WriteOp[Any]] = WriteQueue()
        self._writer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle
    async def open(self, prepare: Callable[[Conn], Awaitable[object]]) -> None:
        """Connect, run ``prepare`` (the schema) on one connection, start writer and listener."""
        async with translated("connecting to PostgreSQL"):
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=2,
                max_size=16,
                timeout=self.timeout,
                command_timeout=self.timeout,
            )
            try:
                async with self._pool.acquire() as conn:
                    await prepare(conn)
                    revision = int(
                        await conn.fetchval("SELECT value FROM meta WHERE key = 'revision'")
                    )
            except BaseException:
                await self._pool.close()
                self._pool = None
                raise
        self._hub.publish(revision, ())
        self._writer = asyncio.create_task(self._write_loop(), name="vifbroker-pg-writer")
        self._listener = asyncio.create_task(self._listen_loop(), name="vifbroker-pg-listener")
        # Open means listening too, when the database lets us within the timeout
        # (if not, the listener keeps trying and readiness says not ready).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), self.timeout)

    async def close(self) -> None:
        for task in (self._writer, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._writer = self._listener = None
        self._queue.close(StoreUnavailable("the store is closing"))
        pool, self._pool = self._pool, None
        if pool is not None:
            try:  # a graceful close waits on the server: not forever when it is gone
                await asyncio.wait_for(pool.close(), self.timeout)
            except (TimeoutError, *UNREACHABLE, asyncpg.PostgresError):
                pool.terminate()

    @property
    def alive(self) -> bool:
        return self._writer is not None and not self._writer.done()

    # -------------------------------------------------------------------- reads
    async def read(
        self, fn: Callable[[Conn], Awaitable[T]], what: str, *, snapshot: bool = True
    ) -> T:
        """Run ``fn`` in one read-only snapshot (REPEATABLE READ); ``snapshot=False``
        for one statement, which is a snapshot by itself (saves BEGIN and COMMIT)."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("store is not open")
        async with translated(what), pool.acquire(timeout=self.timeout) as conn:
            if not snapshot:
                return await fn(conn)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await fn(conn)

    async def probe_write(self, timeout: float) -> None:  # noqa: ASYNC109
        """A real write on a pooled connection; and the listener must be connected."""
        pool = self._pool
        if pool is None or not self.alive:
            raise StoreUnavailable("store is not open")
        if not self.listening.is_set():
            raise StoreUnavailable("not listening for other replicas' commits")
        async with translated("write probe"), asyncio.timeout(timeout), pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES ('probe', 1)"
                " ON CONFLICT (key) DO UPDATE SET value = meta.value + 1"
            )

    # ------------------------------------------------------------------- writes
    async def write(self, op: WriteOp[T]) -> T:
        """Queue ``op``; answer once the batch holding it is committed."""
        if not self.alive:
            raise StoreUnavailable("store is not open")
        result: T = await self._queue.submit(op)
        return result

    async def _write_loop(self) -> None:
        while True:
            batch = await self._queue.next_batch()
            try:
                async with translated("commit"), asyncio.timeout(self.timeout):
                    results, revision, keys = await self._run_batch([op for op, _ in batch])
            except StoreError as exc:  # nobody's write is known to have happened
                log.warning("postgres batch of %d failed: %s", len(batch), exc)
                self._queue.fail(batch, StoreUnavailable(str(exc)))
                continue
            if keys:
                self._hub.publish(max(revision, self._hub.revision), keys)
            self._queue.answer(batch, results)

    async def _run_batch(self, ops: list[WriteOp[Any]]) -> tuple[list[Any], int, set[str]]:
        failed: dict[int, BaseException] = {}
        alone: set[int] = set()
        while True:
            try:
                return await self._try_batch(ops, failed, alone)
            except Rerun as rerun:
                failed[rerun.index] = rerun.error
            except Ungroup as ungroup:
                alone.update(ungroup.indexes)

    async def _try_batch(
        self, ops: list[WriteOp[Any]], failed: dict[int, BaseException], alone: set[int]
    ) -> tuple[list[Any], int, set[str]]:
        """One transaction for ``ops`` (but the ``failed`` ones), without savepoints.

        Savepoints cost two round trips per operation. Instead an operation
        refuses (raises a StoreError) before it writes anything, so a refusal
        leaves nothing to undo; any other failure rolls the whole transaction
        back and the batch runs again without that operation. Consecutive
        operations with a group runner (``postgres_writes.GROUPS``) run as one
        group; a group that fails other than by refusing runs again op by op
        (``alone``), so the failure can be pinned on one.
        """
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
            ctx = WriteContext(conn)
            results: list[Any] = []
            index = 0
            while index < len(ops):
                group = group_at(ops, index, self._groups, failed, alone)
                if len(group) > 1:
                    results += await self._run_group(conn, ctx, ops, group)
                    index += len(group)
                    continue
                if index in failed:
                    results.append(failed[index])
                else:
                    results.append(await self._run_one(conn, ctx, ops[index], index))
                index += 1
            if ctx.revision:  # the head, the sequence and the wake-up in one round trip
                await conn.execute(
                    "WITH head AS (UPDATE meta SET value = $1 WHERE key = 'revision' RETURNING 1)"
                    " SELECT setval('revisions', $1), pg_notify($2, $3) FROM head",
                    ctx.revision,
                    CHANNEL,
                    self._payload(ctx),
                )
            elif ctx.keys:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self._payload(ctx))
        return results, ctx.revision, ctx.keys

    async def _run_group(
        self, conn: Conn, ctx: WriteContext, ops: list[WriteOp[Any]], group: list[int]
    ) -> list[Any]:
        keys, revision = set(ctx.keys), ctx.revision
        runner = self._groups[ops[group[0]].func]  # type: ignore[attr-defined]
        try:
            return await runner(conn, ctx, [dict(ops[i].keywords) for i in group])  # type: ignore[attr-defined]
        except (*UNREACHABLE, asyncpg.TransactionRollbackError):
            raise  # the batch cannot go on
        except Exception as exc:
            ctx.keys, ctx.revision = keys, revision
            raise Ungroup(group) from exc

    async def _run_one(self, conn: Conn, ctx: WriteContext, op: WriteOp[Any], index: int) -> Any:
        keys, revision = set(ctx.keys), ctx.revision
        try:
            return await op(conn, ctx)
        except StoreError as exc:
            ctx.keys, ctx.revision = keys, revision
            return exc
        except (*UNREACHABLE, asyncpg.TransactionRollbackError):
            raise  # the batch cannot go on
        except asyncpg.DataError as exc:
            refused = InvalidInput(f"the database refused a value: {exc}")
            raise Rerun(index, refused) from exc
        except Exception as exc:
            raise Rerun(index, exc) from exc

    def _payload(self, ctx: WriteContext) -> str:
        doc: dict[str, Any] = {"r": ctx.revision, "from": self.replica, "k": sorted(ctx.keys)}
        text = json.dumps(doc, separators=(",", ":"))
        if len(text.encode()) > _NOTIFY_MAX:  # too many keys: every replica wakes everyone
            text = json.dumps({"r": ctx.revision, "from": self.replica, "k": None})
        return text

    # ----------------------------------------------------------------- listening
    async def _listen_loop(self) -> None:
        backoff = 0.05
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=self.timeout,
                    server_settings={"application_name": LISTENER_NAME},
                )
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set, lost))
                await conn.add_listener(CHANNEL, self._notified)
                # Whatever was committed while nobody listened: everyone reads again.
                revision = int(await conn.fetchval("SELECT value FROM meta WHERE key = 'revision'"))
                self._hub.wake_all(revision)
                self.listening.set()
                backoff = 0.05
                while not lost.is_set():
                    # An idle connection to a dead server looks alive: ask it.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 1.0)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=self.timeout)
            except (*UNREACHABLE, asyncpg.PostgresError) as exc:
                if self.listening.is_set():
                    log.warning("lost the PostgreSQL listener connection: %s", exc)
            finally:
                self.listening.clear()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            doc = json.loads(str(payload))
            if doc["from"] == self.replica:
                return  # published at our own commit already
            revision, keys = int(doc["r"]), doc["k"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed notification: %.200s", payload)
            return
        if keys is None:
            self._hub.wake_all(revision)
        else:
            self._hub.publish(max(revision, self._hub.revision), keys)


def _set(event: asyncio.Event, _conn: object) -> None:
    event.set()
