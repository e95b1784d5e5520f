"""The shared store: PostgreSQL through asyncpg, for several broker replicas.

Reads run in REPEATABLE READ snapshots on pooled connections; every write is
a function of ``postgres_writes`` run by the engine's group commit; every
replica's long-polls are woken by LISTEN/NOTIFY (see ``postgres_engine``).
The DSN is libpq's: ``postgresql://user@host1:5432,host2:5432/db?
target_session_attrs=read-write`` follows a cluster's primary across failover.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from vifbroker.model import (
    Host,
    Inbox,
    Migration,
    MigrationState,
    VifRecord,
    wire,
)
from vifbroker.model.wire import InboxPage

from . import postgres_schema, rows, rules
from . import postgres_writes as writes
from .base import Parties
from .errors import NoActiveMigration, NotFound
from .frontend import RoutedWrites
from .hub import ChangeHub
from .postgres_engine import Conn, PgEngine

log = logging.getLogger(__name__)
_ACTIVE = writes.ACTIVE
_PARTIES = rows.PARTIES


def redacted(dsn: str) -> str:
    """The DSN without its password (for messages and logs)."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore(RoutedWrites):
    def __init__(self, dsn: str, *, upgrade: bool = True, timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.hub = ChangeHub()
        self._upgrade = upgrade
        self._engine = PgEngine(dsn, self.hub, timeout=timeout, groups=writes.GROUPS)

    async def open(self) -> None:
        upgrade = functools.partial(
            postgres_schema.upgrade, allow=self._upgrade, url=redacted(self.dsn)
        )
        await self._engine.open(upgrade)

    async def close(self) -> None:
        await self._engine.close()

    async def ping(self) -> None:
        await self._engine.read(lambda c: c.fetchval("SELECT 1"), "ping", snapshot=False)

    def _write(self, operation: str, /, **arguments: Any) -> Awaitable[Any]:
        return self._engine.write(functools.partial(getattr(writes, operation), **arguments))

    async def probe_write(self, timeout: float) -> None:  # noqa: ASYNC109
        await self._engine.probe_write(timeout)

    async def current_revision(self) -> int:
        return self.hub.revision

    async def count_by_state(self) -> dict[MigrationState, int]:
        async def q(c: Conn) -> dict[MigrationState, int]:
            found = await c.fetch("SELECT state, count(*) AS n FROM migrations GROUP BY state")
            return {MigrationState(r["state"]): r["n"] for r in found}

        return await self._engine.read(q, "counting migrations", snapshot=False)

    # ------------------------------------------------------------ migrations
    async def get_migration(self, migration_id: str) -> Migration:
        found = await self._engine.read(
            lambda c: writes.load_migration(c, migration_id), "reading a migration"
        )
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
        args: list[object] = [rules.parse_cursor(cursor)]
        where = ["seq < $1"]
        if state is not None:
            args.append(state.value)
            where.append(f"state = ${len(args)}")
        if domain_uuid is not None:
            args.append(domain_uuid)
            where.append(f"domain_uuid = ${len(args)}")
        if host is not None:
            args.append(host)
            where.append(f"(source_host = ${len(args)} OR destination_host = ${len(args)})")
        args.append(limit + 1)
        sql = (
            f"SELECT * FROM migrations WHERE {' AND '.join(where)}"
            f" ORDER BY seq DESC LIMIT ${len(args)}"
        )

        async def q(c: Conn) -> tuple[list[Migration], str | None]:
            found = await c.fetch(sql, *args)
            page = found[:limit]
            vifs = await writes.fetch_vifs(c, [r["id"] for r in page])
            nxt = str(page[-1]["seq"]) if len(found) > limit else None
            return [rows.migration(r, vifs[r["id"]]) for r in page], nxt

        return await self._engine.read(q, "listing migrations")

    # --------------------------------------------------------------- records
    async def active_migration(self, domain_uuid: str) -> Migration:
        async def q(c: Conn) -> Migration | None:
            mid = await c.fetchval(
                f"SELECT id FROM migrations WHERE domain_uuid = $1 AND {_ACTIVE}", domain_uuid
            )
            return await writes.load_migration(c, mid) if mid else None

        found = await self._engine.read(q, "reading the active migration")
        if found is None:
            raise NoActiveMigration(f"domain {domain_uuid} has no active migration")
        return found

    async def parties(self, migration_id: str) -> Parties:
        async def q(c: Conn) -> asyncpg.Record | None:
            return await c.fetchrow(f"SELECT {_PARTIES} FROM migrations WHERE id = $1",
                                    migration_id)  # fmt: skip

        row = await self._engine.read(q, "reading the migration's hosts", snapshot=False)
        if row is None:
            raise NotFound(f"no migration {migration_id}")
        return rows.parties(row)

    async def active_parties(self, domain_uuid: str) -> Parties:
        async def q(c: Conn) -> asyncpg.Record | None:
            return await c.fetchrow(
                f"SELECT {_PARTIES} FROM migrations WHERE domain_uuid = $1 AND {_ACTIVE}",
                domain_uuid,
            )

        row = await self._engine.read(q, "reading the active migration's hosts", snapshot=False)
        if row is None:
            raise NoActiveMigration(f"domain {domain_uuid} has no active migration")
        return rows.parties(row)

    async def latest_migration(self, domain_uuid: str) -> Migration:
        async def q(c: Conn) -> Migration | None:
            mid = await _latest(c, domain_uuid)
            return await writes.load_migration(c, mid) if mid else None

        found = await self._engine.read(q, "reading the latest migration")
        if found is None:
            raise NotFound(f"no migration for domain {domain_uuid}")
        return found

    async def get_interfaces(self, domain_uuid: str, mac: str | None = None) -> list[VifRecord]:
        async def q(c: Conn) -> list[VifRecord]:
            mid = await _latest(c, domain_uuid)
            if mid is None:
                return []
            found = await c.fetch(
                "SELECT * FROM vifs WHERE migration_id = $1 AND ($2::text IS NULL OR mac = $2)"
                " ORDER BY position",
                mid,
                mac,
            )
            return [rows.record(r, domain_uuid) for r in found]

        found = await self._engine.read(q, "reading records")
        if not found:
            what = f"interface {mac} of domain {domain_uuid}" if mac else f"domain {domain_uuid}"
            raise NotFound(f"no records for {what}")
        return found

    # ----------------------------------------------------------------- inbox
    async def inbox(self, host: str, after: int, limit: int = 500) -> Inbox:
        async def q(c: Conn) -> Inbox:
            # One snapshot: the revision read here covers every row read after it.
            current = int(await c.fetchval("SELECT value FROM meta WHERE key = 'revision'"))
            found = await c.fetch(
                "SELECT * FROM migrations WHERE revision > $1 AND"
                " (source_host = $2 OR destination_host = $2) ORDER BY revision LIMIT $3",
                after,
                host,
                limit + 1,
            )
            page = found[:limit]
            vifs = await writes.fetch_vifs(c, [r["id"] for r in page])
            done = []
            for r in page:
                mig = rows.migration(r, vifs[r["id"]])
                done.append((mig, [rows.record(v, mig.domain_uuid) for v in vifs[r["id"]]]))
            return rules.inbox(host, after, done, len(found) > limit, current)

        return await self._engine.read(q, "reading the inbox")

    async def inbox_page(self, host: str, after: int, limit: int = 500) -> InboxPage:
        return await wire.page_of_any(await self.inbox(host, after, limit))

    async def events_page(self, after: int, limit: int = 500) -> list[tuple[int, str]]:
        return [(m.revision, wire.migration_json(m)) for m in await self.events(after, limit)]

    async def events(self, after: int, limit: int = 500) -> list[Migration]:
        async def q(c: Conn) -> list[Migration]:
            found = await c.fetch(
                "SELECT * FROM migrations WHERE revision > $1 ORDER BY revision LIMIT $2",
                after,
                limit,
            )
            vifs = await writes.fetch_vifs(c, [r["id"] for r in found])
            return [rows.migration(r, vifs[r["id"]]) for r in found]

        return await self._engine.read(q, "reading events")

    # ----------------------------------------------------------------- hosts
    async def get_host(self, name: str) -> Host:
        async def q(c: Conn) -> asyncpg.Record | None:
            return await c.fetchrow("SELECT * FROM hosts WHERE name = $1", name)

        row = await self._engine.read(q, "reading a host", snapshot=False)
        if row is None:
            raise NotFound(f"no host {name}")
        return rows.host(row)

    async def list_hosts(self) -> list[Host]:
        async def q(c: Conn) -> list[asyncpg.Record]:
            return list(await c.fetch("SELECT * FROM hosts ORDER BY name"))

        return [rows.host(r) for r in await self._engine.read(q, "listing hosts", snapshot=False)]

    async def running_hosts(self, domain_uuid: str) -> list[Host]:
        async def q(c: Conn) -> list[Host]:
            found = await c.fetch(
                "SELECT * FROM hosts WHERE running_domains::jsonb ? $1"
                " ORDER BY last_seen DESC, name LIMIT 16",
                domain_uuid,
            )
            return [rows.host(row) for row in found]

        return await self._engine.read(q, "finding a domain's host", snapshot=False)


async def _latest(c: Conn, domain_uuid: str) -> str | None:
    """The domain's active migration, else its newest."""
    mid: str | None = await c.fetchval(
        f"SELECT id FROM migrations WHERE domain_uuid = $1 ORDER BY ({_ACTIVE}) DESC, seq DESC"
        " LIMIT 1",
        domain_uuid,
    )
    return mid
