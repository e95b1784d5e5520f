"""Threads and group commit for the SQLite store.

SQLite calls block (a commit with ``synchronous=FULL`` waits for fsync), so
each connection has its own single thread. Writes queue up on the event loop;
the writer takes everything queued, runs every operation in ONE transaction
and commits once, on the writer thread. While that fsync runs, new writes
queue for the next batch: concurrent writers share commits instead of waiting
in line. Only after the commit returns are callers answered and the change
published, so nothing not yet durable is ever seen.

The writer is no task but two callbacks: a write into an idle engine has its
batch started by a callback (``_start``) once the loop's current turn is
through, and the commit's answer, handed back to the loop by the writer
thread, answers the batch and starts the next (``_committed``). A handoff's
upload so skips a task's two wake-ups (for the queue, and for the commit).

A small batch (``inline``: a few hundred vifs at most) runs its statements on
the event loop, and only its COMMIT on the writer thread. On the writer thread
every sqlite3 call lets go of the GIL and then waits for the busy loop to hand
it back (a batch of 25 uploads took ~9 ms of wall time there); bench_upload
measured 3,500-3,900 uploads/s that way against 4,300-4,600 inline. The
writer connection is only ever used by the writer task, one step at a time,
so which thread runs a step does not matter to SQLite. The loop takes the
write lock without waiting (busy timeout 0 for that BEGIN): while another
process holds it, the batch runs on the writer thread, which waits there.

No savepoint per operation (two statements each, the writer's busiest Python):
an operation refuses (raises a StoreError) before it writes anything, so a
refusal leaves nothing to undo; any other failure rolls the whole transaction
back and the batch runs again without that operation (as the PostgreSQL engine
does). Consecutive operations with a group runner (``sqlite_writes.GROUPS``)
run as one group: a few statements for all of them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .batching import Rerun, Ungroup, WriteQueue, group_at
from .errors import StoreError, StoreUnavailable
from .hop import Hop
from .hub import ChangeHub
from .sqlite_cache import Event, Foreign
from .sqlite_rows import stored_revision

log = logging.getLogger(__name__)

T = TypeVar("T")


Active = tuple[Mapping[str, Any], Mapping[str, dict[str, Any]]]


def _never(migration_id: str) -> bool:
    return False


def _unknown(domain_uuid: str) -> Active | None:
    return None


@dataclass
class WriteContext:
    """Per-batch state handed to write operations."""

    revision: int
    #: Whether the watch cache holds a migration (a change may then carry only what it wrote).
    cached: Callable[[str], bool]
    #: The watch cache's row and vifs of a domain's active migration, when it holds
    #: them (``WatchCache.active``): as committed, so a write may take them for SQL's.
    active: Callable[[str], Active | None] = _unknown
    #: The same for a migration by id (``WatchCache.rows_of``).
    rows_of: Callable[[str], Active | None] = _unknown
    keys: set[str] = field(default_factory=set)
    # What the operations changed, in order, for the watch cache.
    changes: list[Event] = field(default_factory=list)

    def next_revision(self) -> int:
        self.revision += 1
        return self.revision


#: The page size of a database file this broker creates (bytes).
PAGE_SIZE = 2048
#: How long a connection waits for another process's lock before failing.
BUSY_TIMEOUT_MS = 30_000
WriteOp = Callable[[sqlite3.Connection, WriteContext], T]
#: Runs consecutive operations of one function together: their keyword
#: arguments in, one result (or the StoreError it refused with) per operation out.
GroupRunner = Callable[[sqlite3.Connection, WriteContext, list[dict[str, Any]]], list[Any]]


class _Busy(Exception):
    """Run this batch on the writer thread: too large for the loop, or the lock is taken."""


#: Called on the loop with the changes of each durable commit, before any
#: caller is answered or any long-poll woken.
OnCommit = Callable[[list[Event]], None]
#: Prepares a new database file or upgrades an old one (on the writer's connection).
Upgrade = Callable[[sqlite3.Connection], object]


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    # A new file's pages (an existing one keeps its own: WAL mode fixes them).
    # Each COMMIT appends every page it changed to the WAL and waits for its
    # fsync, whose time here grows with the bytes: a handoff's upload changes
    # four pages (the vif, the migration, its revision index, meta; six before
    # schema step 4), 16 KiB at SQLite's default of 4 KiB. At 2 KiB
    # bench/ab_handoff.py measured the handoff 0.03 of the floor faster (six
    # pages then), and bench_upload no slower; 1 KiB was
    # faster still for the handoff but cost uploads ~5% (twice the pages per batch).
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    # Statement journals in memory: an UPDATE that moves a migration's state
    # (its partial indexes) needs one, and a file-backed one is a 64 KiB buffer
    # malloc'd, faulted in and freed per row (~120 us; ~12 us in memory here).
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.row_factory = sqlite3.Row
    return conn


class Engine:
    """The connections, the writer task and the group commit of one database file.

    The revision is the hub's: the engine starts each batch from ``hub.revision``
    and publishes the batch's last one after the commit. (``meta.revision`` keeps
    it on disk for the next start.)
    """

    def __init__(
        self,
        path: str,
        hub: ChangeHub,
        upgrade: Upgrade,
        on_commit: OnCommit,
        cached: Callable[[str], bool],
        groups: Mapping[Callable[..., Any], GroupRunner] | None = None,
        inline: Callable[[list[WriteOp[Any]]], bool] = lambda ops: False,
        active: Callable[[str], Active | None] = _unknown,
        rows_of: Callable[[str], Active | None] = _unknown,
    ) -> None:
        self._path = path
        self._on_commit = on_commit
        self._cached = cached
        self._active = active
        self._rows_of = rows_of
        # PRAGMA data_version as last read on the writer's connection: it moves
        # when another connection (another process) commits to the file, and
        # then nothing the watch cache holds can be trusted until a batch has
        # told it so (``Foreign``, first of that batch's events).
        self._data_version = 0
        self._foreign = False
        self._hub = hub
        self._upgrade = upgrade
        self._groups = dict(groups or {})
        self._inline = inline
        self._rhop = Hop("vifbroker-sqlite-read")
        self._whop = Hop("vifbroker-sqlite-write")
        self._rconn: sqlite3.Connection | None = None
        self._wconn: sqlite3.Connection | None = None
        self._queue: WriteQueue[WriteOp[Any]] = WriteQueue()
        # The writer: no task, a batch at a time. The first write into an idle
        # engine starts a batch at once; each commit's answer, back on the loop,
        # starts the next with everything queued meanwhile (``_start``, ``_committed``).
        self._open = False
        #: Open and not broken: taking writes (a plain attribute, read on every write).
        self.alive = False
        self._running = False
        self._broken = False
        self._idle: asyncio.Future[None] | None = None  # close() waits on it

    async def open(self) -> None:
        """Open (creating or upgrading the schema) and set the hub to the stored revision."""
        try:
            self._wconn, revision = await self._whop.run(self._open_writer)
            self._rconn = await self._rhop.run(functools.partial(connect, self._path))
        except BaseException as exc:
            await self.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"cannot open {self._path}: {exc}") from exc
            raise
        self._hub.publish(revision, ())
        self._open = True
        self.alive = not self._broken

    def _open_writer(self) -> tuple[sqlite3.Connection, int]:
        conn = connect(self._path)
        try:
            self._upgrade(conn)
            stored = stored_revision(conn)
            # Only a BEGIN waits for the write lock (WAL: inside a write transaction
            # nothing takes a lock), and only on the writer thread (``_begin``): two
            # PRAGMAs around each BEGIN on the loop cost ~12 us of a handoff's batch.
            conn.execute("PRAGMA busy_timeout = 0")
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        return conn, stored

    async def close(self) -> None:
        self._open = self.alive = False
        self._queue.close(StoreUnavailable("the store is closing"))
        if self._running:  # its commit is under way: its writers hear how it went
            if self._idle is None or self._idle.done():
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)  # a second close() waits for the same
        if self._wconn is not None:
            await self._whop.run(self._wconn.close)
        if self._rconn is not None:
            await self._rhop.run(self._rconn.close)
        self._wconn = self._rconn = None
        self._whop.close()
        self._rhop.close()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction (a consistent snapshot)."""
        conn = self._rconn
        if conn is None:
            raise StoreUnavailable("store is not open")

        def run() -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        try:
            return await self._rhop.run(run)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"sqlite read failed: {exc}") from exc

    def write(self, op: WriteOp[T]) -> Awaitable[T]:
        """Queue ``op``; what it answers, once the batch holding it is committed to disk."""
        if not self.alive:
            raise StoreUnavailable("store is not open")
        fut = self._queue.submit(op)
        if not self._running:
            # Idle: the batch begins once this turn of the loop is through, with
            # whatever else is written meanwhile (a host's results, say).
            self._running = True
            asyncio.get_running_loop().call_soon(self._start)
        return fut

    def _start(self) -> None:
        """Run the next batch: everything queued. Its statements run here, on the loop,
        when small (``inline``); the COMMIT, or the whole batch, on the writer thread."""
        while self.alive and (batch := self._queue.take()):
            ops = [op for op, _ in batch]
            start = self._hub.revision
            self._running = True
            try:
                if self._inline(ops):
                    try:
                        ran = self._run_batch(ops, start, self._begin_now)
                    except _Busy:  # another process holds the write lock: wait there
                        pass
                    else:
                        commit = functools.partial(self._commit_ran, ran)
                        self._whop.submit(commit, functools.partial(self._committed, batch))
                        return
                # Large, or the lock is taken: the whole batch on the writer thread.
                run = functools.partial(self._run_and_commit, ops, start)
                self._whop.submit(run, functools.partial(self._committed, batch))
                return
            except Exception as exc:  # its statements failed: nobody's write happened
                self._fail(batch, exc)
        self._running = False
        if not self.alive:  # closed, or broken: nothing queued will run
            self._queue.close(StoreUnavailable("the store is not open"))
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)  # close() may go on

    def _committed(
        self,
        batch: list[tuple[WriteOp[Any], asyncio.Future[Any]]],
        ran: tuple[list[Any], WriteContext] | None,
        exc: BaseException | None,
    ) -> None:
        """On the loop, once the writer thread has committed ``batch`` (its results and
        context) or failed (``exc``): answer it, then start the next."""
        try:
            if exc is not None:
                self._fail(batch, exc)
                return
            assert ran is not None  # what ``_start``'s commit callables return
            results, ctx = ran
            self._foreign = False  # the batch told the cache (``Foreign``)
            try:
                self._on_commit(ctx.changes)
            except BaseException:
                # The cache no longer matches the file: take no more writes.
                self._broken = True
                self.alive = False
                self._queue.fail(batch, StoreUnavailable("the store broke after a commit"))
                raise
            # Durable now. Wake the long-polls first: their callbacks then run before
            # the writers' (whose answers nobody else waits for), which takes the
            # writer's response work off the handoff path.
            if ctx.revision != self._hub.revision or ctx.keys:
                self._hub.publish(ctx.revision, ctx.keys)
            self._queue.answer(batch, results)
        finally:
            self._start()

    def _fail(
        self, batch: list[tuple[WriteOp[Any], asyncio.Future[Any]]], exc: BaseException
    ) -> None:
        self._queue.fail(batch, StoreUnavailable(f"sqlite commit failed: {exc}"))
        log.error("sqlite batch of %d failed: %s", len(batch), exc)

    def _run_and_commit(
        self, ops: list[WriteOp[Any]], start: int
    ) -> tuple[list[Any], WriteContext]:
        return self._commit_ran(self._run_batch(ops, start))

    def _commit_ran(self, ran: tuple[list[Any], WriteContext]) -> tuple[list[Any], WriteContext]:
        """COMMIT what ``ran`` (a batch's results and context) wrote; hand it back."""
        self._commit()
        return ran

    def _begin(self) -> None:
        """BEGIN IMMEDIATE on the writer thread, waiting up to the busy timeout."""
        conn = self._wconn
        assert conn is not None
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout = 0")

    def _begin_now(self) -> None:
        """BEGIN IMMEDIATE on the loop without waiting: _Busy while another process
        holds the file's write lock (the wait, up to the busy timeout, would
        otherwise stall every request)."""
        conn = self._wconn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")  # the writer's busy timeout is 0 (``_open_writer``)
        except sqlite3.OperationalError as exc:
            raise _Busy from exc

    def _commit(self) -> None:
        conn = self._wconn
        assert conn is not None
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _run_batch(
        self, ops: list[WriteOp[Any]], start: int, begin: Callable[[], None] | None = None
    ) -> tuple[list[Any], WriteContext]:
        """Run ``ops`` in one transaction (begun by ``begin``), left open for ``_commit``."""
        failed: dict[int, BaseException] = {}
        alone: set[int] = set()
        while True:
            try:
                return self._try_batch(ops, start, failed, alone, begin or self._begin)
            except Rerun as rerun:
                failed[rerun.index] = rerun.error
            except Ungroup as ungroup:
                alone.update(ungroup.indexes)

    def _try_batch(
        self,
        ops: list[WriteOp[Any]],
        start: int,
        failed: dict[int, BaseException],
        alone: set[int],
        begin: Callable[[], None],
    ) -> tuple[list[Any], WriteContext]:
        conn = self._wconn
        assert conn is not None
        results: list[Any] = []
        begin()
        try:
            if self._foreign_write(conn):
                # Another process may have taken revisions (a second broker on
                # this file): go on after the last one stored, never reuse one.
                start = max(start, stored_revision(conn))
                ctx = WriteContext(start, _never, _unknown, changes=[Foreign()])
            else:
                ctx = WriteContext(start, self._cached, self._active, self._rows_of)
            index = 0
            while index < len(ops):
                group = group_at(ops, index, self._groups, failed, alone)
                if len(group) > 1:
                    results += self._run_group(conn, ctx, ops, group)
                    index += len(group)
                    continue
                if index in failed:
                    results.append(failed[index])
                else:
                    results.append(self._run_one(conn, ctx, ops[index], index))
                index += 1
            if ctx.revision != start:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('revision', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (ctx.revision,),
                )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results, ctx

    def _foreign_write(self, conn: sqlite3.Connection) -> bool:
        """Whether another connection committed since the cache was last told
        (asked inside the write transaction: nobody else can commit then)."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._foreign = True
        return self._foreign

    def _run_group(
        self, conn: sqlite3.Connection, ctx: WriteContext, ops: list[WriteOp[Any]], group: list[int]
    ) -> list[Any]:
        runner = self._groups[ops[group[0]].func]  # type: ignore[attr-defined]
        try:
            return runner(conn, ctx, [dict(ops[i].keywords) for i in group])  # type: ignore[attr-defined]
        except Exception as exc:  # the transaction is rolled back and run again
            raise Ungroup(group) from exc

    @staticmethod
    def _run_one(conn: sqlite3.Connection, ctx: WriteContext, op: WriteOp[Any], index: int) -> Any:
        # A refusal comes before any write, and so before the op names keys or
        # changes: only the revisions it may have taken are given back.
        revision, changes = ctx.revision, len(ctx.changes)
        try:
            return op(conn, ctx)
        except StoreError as exc:
            ctx.revision = revision
            del ctx.changes[changes:]
            return exc
        except Exception as exc:  # what it wrote is unknown: roll back, run again without it
            raise Rerun(index, exc) from exc
