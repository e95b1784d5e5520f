"""The embedded store: one SQLite file (WAL, synchronous=FULL, group commit)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any

from vifbroker.model import (
    TERMINAL_STATES,
    Host,
    Inbox,
    Migration,
    MigrationState,
    VifRecord,
    wire,
)
from vifbroker.model.wire import InboxPage

from . import rows, rules, sqlite_schema
from . import sqlite_rows as sqlrows
from . import sqlite_writes as writes
from .base import Parties
from .errors import (
    NoActiveMigration,
    NotFound,
    StoreUnavailable,
)
from .frontend import RoutedWrites
from .hub import ChangeHub
from .owner import FileInUse, OwnerLock
from .sqlite_cache import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    Change,
    Event,
    WatchCache,
    answer,
)
from .sqlite_cache import page as cache_page
from .sqlite_engine import Engine

_ACTIVE = writes.ACTIVE
_PARTIES = rows.PARTIES
_TERMINAL = frozenset(state.value for state in TERMINAL_STATES)
_MAX_PARTIES = 65536
log = logging.getLogger(__name__)

#: Inbox answers from the watch cache larger than this are built in a thread.
_INLINE_BUILD_BYTES = 64 * 1024


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (port data is the tenants'):
    SQLite gives its -wal and -shm files the database file's permissions."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


class SQLiteStore(RoutedWrites):
    """Reads run on a reader thread; every write is a function of ``sqlite_writes``
    run by the engine's group commit; the inbox near the head comes from the cache."""

    def __init__(
        self,
        path: str | Path,
        *,
        upgrade: bool = True,
        cache_entries: int = DEFAULT_MAX_ENTRIES,
        cache_bytes: int = DEFAULT_MAX_BYTES,
        exclusive: bool = True,
    ) -> None:
        """``exclusive``: refuse to open a file another such store holds (``owner``);
        off only where several stores on one file are what is being tested."""
        self.path = str(path)
        owned = exclusive and self.path != ":memory:"
        self._owner = OwnerLock(self.path + ".lock") if owned else None
        self.hub = ChangeHub()
        self.cache = WatchCache(self.hub, cache_entries, cache_bytes)
        upgrade_schema = functools.partial(
            sqlite_schema.upgrade, allow=upgrade, url=f"sqlite://{self.path}"
        )
        self._engine = Engine(
            self.path,
            self.hub,
            upgrade_schema,
            self._committed,
            self.cache.holds,
            groups=writes.GROUPS,
            inline=writes.runs_inline,
            active=self.cache.active,
            rows_of=self.cache.rows_of,
        )
        # Who takes part in each domain's active migration, as last read. An
        # agent's upload asks this before it sends its body, and would otherwise
        # cost a read. The parties of a migration never change while it is
        # active, so only a commit that ends it (or names another migration
        # of the domain) drops its domain: uploads and results keep it.
        self._parties: dict[str, Parties] = {}
        self._ends = 0  # commits that ended a migration: a read across one is not kept

    async def open(self) -> None:
        if self.path != ":memory:":
            _create_private(Path(self.path))
        if self._owner is not None:
            try:
                self._owner.take()
            except FileInUse as exc:
                held = f" (pid {exc.holder})" if exc.holder else ""
                raise StoreUnavailable(
                    f"{self.path} is in use by another vifbroker process{held}: one broker "
                    "per SQLite file (replicas share PostgreSQL)"
                ) from None
            except OSError as exc:
                raise StoreUnavailable(f"cannot lock {self._owner.path}: {exc}") from exc
        try:
            await self._engine.open()
        except BaseException:
            self._release()
            raise
        self.cache.reset(self.hub.revision)

    def _release(self) -> None:
        if self._owner is not None:
            self._owner.release()

    def _committed(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Change):
                self._forget_parties(event.row)
            else:  # pruned (gone outright), or written by another process
                self._ends += 1
                self._parties.clear()
        try:
            self.cache.apply(events)
        except Exception:  # a bug here must not cost answers: SQL still has them
            log.exception("watch cache lost track; starting it over at %d", self.hub.revision)
            self.cache.reset(self.hub.revision)

    def _forget_parties(self, row: Mapping[str, Any]) -> None:
        if row["state"] in _TERMINAL:
            self._ends += 1
            self._parties.pop(row["domain_uuid"], None)
        else:
            known = self._parties.get(row["domain_uuid"])
            if known is not None and known.migration_id != row["id"]:
                del self._parties[row["domain_uuid"]]

    async def close(self) -> None:
        try:
            await self._engine.close()
        finally:
            self._release()

    async def ping(self) -> None:
        if not self._engine.alive:
            raise StoreUnavailable("sqlite writer is not running")
        await self._engine.read(lambda c: c.execute("SELECT 1").fetchone())

    def _write(self, operation: str, /, **arguments: Any) -> Awaitable[Any]:
        return self._engine.write(functools.partial(getattr(writes, operation), **arguments))

    async def probe_write(self, timeout: float) -> None:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                await self._engine.write(writes.probe)
        except TimeoutError as exc:
            raise StoreUnavailable(f"sqlite write probe took over {timeout}s") from exc

    async def current_revision(self) -> int:
        return self.hub.revision

    async def count_by_state(self) -> dict[MigrationState, int]:
        def q(c: sqlite3.Connection) -> dict[MigrationState, int]:
            sql = "SELECT state, count(*) FROM migrations GROUP BY state"
            return {MigrationState(s): n for s, n in c.execute(sql)}

        return await self._engine.read(q)

    # ------------------------------------------------------------ migrations
    async def get_migration(self, migration_id: str) -> Migration:
        # A migration the watch cache holds (any recently changed one) is built
        # from memory: no thread hop, no query (a results post reads it first).
        found = self.cache.migration(migration_id)
        return found if found is not None else await self.migration_sql(migration_id)

    async def parties(self, migration_id: str) -> Parties:
        # They never change: the watch cache's row tells them, else one indexed read.
        held = self.cache.rows_of(migration_id)
        if held is not None:
            return rows.parties(held[0])

        def q(c: sqlite3.Connection) -> Parties | None:
            row = c.execute(f"SELECT {_PARTIES} FROM migrations WHERE id = ?",
                            (migration_id,)).fetchone()  # fmt: skip
            return rows.parties(row) if row else None

        found = await self._engine.read(q)
        if found is None:
            raise NotFound(f"no migration {migration_id}")
        return found

    async def migration_sql(self, migration_id: str) -> Migration:
        """The migration straight from the database (the watch cache's reference)."""
        found = await self._engine.read(lambda c: sqlrows.load_migration(c, migration_id))
        if found is None:
            raise NotFound(f"no migration {migration_id}")
        return found

    async def list_migrations(
        self,
        *,
        state: MigrationState | None = None,
        domain_uuid: str | None = None,
        host: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Migration], str | None]:
        # Newest first: a cursor is the seq of the last row handed out.
        where: list[str] = ["seq < ?"]
        args: list[object] = [rules.parse_cursor(cursor)]
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        if domain_uuid is not None:
            where.append("domain_uuid = ?")
            args.append(domain_uuid)
        if host is not None:
            where.append("(source_host = ? OR destination_host = ?)")
            args += [host, host]
        sql = f"SELECT * FROM migrations WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"

        def q(c: sqlite3.Connection) -> tuple[list[Migration], str | None]:
            found = c.execute(sql, (*args, limit + 1)).fetchall()
            page = found[:limit]
            vifs = sqlrows.fetch_vifs(c, [r["id"] for r in page])
            nxt = str(page[-1]["seq"]) if len(found) > limit else None
            return [rows.migration(r, vifs[r["id"]]) for r in page], nxt

        return await self._engine.read(q)

    # --------------------------------------------------------------- records
    async def active_migration(self, domain_uuid: str) -> Migration:
        def q(c: sqlite3.Connection) -> Migration | None:
            row = c.execute(
                f"SELECT id FROM migrations WHERE domain_uuid = ? AND {_ACTIVE}", (domain_uuid,)
            ).fetchone()
            return sqlrows.load_migration(c, row["id"]) if row else None

        found = await self._engine.read(q)
        if found is None:
            raise NoActiveMigration(f"domain {domain_uuid} has no active migration")
        return found

    async def active_parties(self, domain_uuid: str) -> Parties:
        def q(c: sqlite3.Connection) -> Parties | None:
            row = c.execute(
                f"SELECT {_PARTIES} FROM migrations WHERE domain_uuid = ? AND {_ACTIVE}",
                (domain_uuid,),
            ).fetchone()
            return rows.parties(row) if row else None

        known = self._parties.get(domain_uuid)
        if known is not None:
            return known
        ends = self._ends
        found = await self._engine.read(q)
        if found is None:
            raise NoActiveMigration(f"domain {domain_uuid} has no active migration")
        if ends == self._ends:  # else it may have ended meanwhile: answer, don't keep
            if len(self._parties) >= _MAX_PARTIES:
                self._parties.clear()
            self._parties[domain_uuid] = found
        return found

    async def latest_migration(self, domain_uuid: str) -> Migration:
        def q(c: sqlite3.Connection) -> Migration | None:
            row = _latest(c, domain_uuid)
            return sqlrows.load_migration(c, row["id"]) if row else None

        found = await self._engine.read(q)
        if found is None:
            raise NotFound(f"no migration for domain {domain_uuid}")
        return found

    async def get_interfaces(self, domain_uuid: str, mac: str | None = None) -> list[VifRecord]:
        def q(c: sqlite3.Connection) -> list[VifRecord]:
            row = _latest(c, domain_uuid)
            if row is None:
                return []
            sql, args = "SELECT * FROM vifs WHERE migration_id = ?", [row["id"]]
            order = " ORDER BY position"
            if mac is not None:
                sql, args = sql + " AND mac = ?", [*args, mac]
            return [rows.record(r, domain_uuid) for r in c.execute(sql + order, args)]

        found = await self._engine.read(q)
        if not found:
            what = f"interface {mac} of domain {domain_uuid}" if mac else f"domain {domain_uuid}"
            raise NotFound(f"no records for {what}")
        return found

    # ----------------------------------------------------------------- inbox
    async def inbox(self, host: str, after: int, limit: int = 500) -> Inbox:
        # A reader near the head (a woken long-poll) is answered from memory:
        # no thread hop, no query. Older positions fall back to SQL.
        found = self.cache.select(host, after, limit)
        if found is None:
            return await self.inbox_sql(host, after, limit)
        revision = self.cache.revision
        if sum(held.size for held in found) <= _INLINE_BUILD_BYTES:
            return answer(host, after, limit, found, revision)
        # A large answer (many or large records) is built in a thread: one
        # short pydantic call per record, so the loop keeps serving meanwhile.
        return await asyncio.to_thread(answer, host, after, limit, found, revision)

    async def inbox_page(self, host: str, after: int, limit: int = 500) -> InboxPage:
        # The same, in wire form: each record and migration the cache holds is
        # rendered once per change and kept (both hosts of an evacuation, every
        # poll that hands it out, share the text). Rendering what is new is the
        # cost: past a size it runs in a thread, as ``inbox`` builds models.
        found = self.cache.select(host, after, limit)
        if found is None:
            return await wire.page_of_any(await self.inbox_sql(host, after, limit))
        revision = self.hub.revision
        page = found[:limit]
        size = 0
        for held in page:
            size += held.size
        # Small enough whatever is rendered already (a handoff's page, mostly), or
        # once what is rendered already is left out.
        if size <= _INLINE_BUILD_BYTES or (
            sum(held.unrendered() for held in page) <= _INLINE_BUILD_BYTES
        ):
            return cache_page(host, after, limit, found, revision)
        return await asyncio.to_thread(cache_page, host, after, limit, found, revision)

    async def inbox_sql(self, host: str, after: int, limit: int = 500) -> Inbox:
        """The inbox straight from the database (the watch cache's reference)."""

        def q(c: sqlite3.Connection) -> Inbox:
            current = sqlrows.stored_revision(c)
            found = c.execute(
                "SELECT * FROM migrations WHERE revision > ? AND"
                " (source_host = ? OR destination_host = ?) ORDER BY revision LIMIT ?",
                (after, host, host, limit + 1),
            ).fetchall()
            page = found[:limit]
            vifs = sqlrows.fetch_vifs(c, [r["id"] for r in page])
            done = []
            for r in page:
                mig = rows.migration(r, vifs[r["id"]])
                done.append((mig, [rows.record(v, mig.domain_uuid) for v in vifs[r["id"]]]))
            return rules.inbox(host, after, done, len(found) > limit, current)

        return await self._engine.read(q)

    async def events(self, after: int, limit: int = 500) -> list[Migration]:
        found = self.cache.events(after, limit)
        if found is None:
            return await self.events_sql(after, limit)
        return [rows.migration(held.row, held.vifs) for held in found]

    async def events_page(self, after: int, limit: int = 500) -> list[tuple[int, str]]:
        # From the watch cache near the head: each migration's JSON text is the
        # one its inbox items carry, rendered once per change.
        found = self.cache.events(after, limit)
        if found is None:
            migrations = await self.events_sql(after, limit)
            return [(m.revision, wire.migration_json(m)) for m in migrations]
        return [(int(held.row["revision"]), held.migration_text()) for held in found]

    async def events_sql(self, after: int, limit: int = 500) -> list[Migration]:
        """The event stream's migrations straight from the database (the cache's reference)."""

        def q(c: sqlite3.Connection) -> list[Migration]:
            found = c.execute(
                "SELECT * FROM migrations WHERE revision > ? ORDER BY revision LIMIT ?",
                (after, limit),
            ).fetchall()
            vifs = sqlrows.fetch_vifs(c, [r["id"] for r in found])
            return [rows.migration(r, vifs[r["id"]]) for r in found]

        return await self._engine.read(q)

    # ----------------------------------------------------------------- hosts
    async def get_host(self, name: str) -> Host:
        row = await self._engine.read(
            lambda c: c.execute("SELECT * FROM hosts WHERE name = ?", (name,)).fetchone()
        )
        if row is None:
            raise NotFound(f"no host {name}")
        return rows.host(row)

    async def list_hosts(self) -> list[Host]:
        found = await self._engine.read(
            lambda c: c.execute("SELECT * FROM hosts ORDER BY name").fetchall()
        )
        return [rows.host(r) for r in found]

    async def running_hosts(self, domain_uuid: str) -> list[Host]:
        def q(c: sqlite3.Connection) -> list[Host]:
            found = c.execute(
                "SELECT * FROM hosts WHERE EXISTS (SELECT 1 FROM json_each(running_domains)"
                " WHERE value = ?) ORDER BY last_seen DESC, name LIMIT 16",
                (domain_uuid,),
            )
            return [rows.host(row) for row in found]

        return await self._engine.read(q)


def _latest(c: sqlite3.Connection, domain_uuid: str) -> sqlite3.Row | None:
    """The domain's active migration row, else its newest."""
    row: sqlite3.Row | None = c.execute(
        f"SELECT * FROM migrations WHERE domain_uuid = ? ORDER BY ({_ACTIVE}) DESC, seq DESC"
        " LIMIT 1",
        (domain_uuid,),
    ).fetchone()
    return row
