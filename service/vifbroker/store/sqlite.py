"""The embedded store: one SQLite file (WAL, synchronous=FULL, group commit)."""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from vifbroker.model import (
    Host,
    HostIn,
    Inbox,
    Interface,
    Migration,
    MigrationCreate,
    MigrationState,
    ResultIn,
    VifRecord,
)

from . import rules
from . import sqlite_rows as rows
from .errors import (
    Conflict,
    InvalidInput,
    NoActiveMigration,
    NotFound,
    PreconditionFailed,
    StoreUnavailable,
    WrongHost,
)
from .hub import ChangeHub
from .sqlite_cache import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, Event, Pruned, WatchCache, change
from .sqlite_engine import Engine, WriteContext

_ACTIVE = f"state NOT IN {rows.TERMINAL_SQL}"
log = logging.getLogger(__name__)


class SQLiteStore:
    def __init__(
        self,
        path: str | Path,
        *,
        cache_entries: int = DEFAULT_MAX_ENTRIES,
        cache_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.path = str(path)
        self.hub = ChangeHub()
        self.cache = WatchCache(cache_entries, cache_bytes)
        self._engine = Engine(self.path, self.hub, rows.SCHEMA, self._committed)

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.hub.revision = await self._engine.open()
        self.cache.reset(self.hub.revision)

    def _committed(self, revision: int, events: list[Event]) -> None:
        try:
            self.cache.apply(revision, events)
        except Exception:  # a bug here must not cost answers: SQL still has them
            log.exception("watch cache lost track; starting it over at %d", revision)
            self.cache.reset(revision)

    async def close(self) -> None:
        await self._engine.close()

    async def ping(self) -> None:
        if not self._engine.alive:
            raise StoreUnavailable("sqlite writer is not running")
        await self._engine.read(lambda c: c.execute("SELECT 1").fetchone())

    async def current_revision(self) -> int:
        return await self._engine.read(_revision)

    async def count_by_state(self) -> dict[MigrationState, int]:
        def q(c: sqlite3.Connection) -> dict[MigrationState, int]:
            sql = "SELECT state, count(*) FROM migrations GROUP BY state"
            return {MigrationState(s): n for s, n in c.execute(sql)}

        return await self._engine.read(q)

    # ------------------------------------------------------------ migrations
    async def create_migration(self, req: MigrationCreate, now: datetime) -> tuple[Migration, bool]:
        mid = req.id or str(uuid.uuid4())

        def op(c: sqlite3.Connection, ctx: WriteContext) -> tuple[Migration, bool]:
            row = c.execute("SELECT * FROM migrations WHERE id = ?", (mid,)).fetchone()
            if row is not None:
                stored = MigrationCreate(
                    domain_uuid=row["domain_uuid"],
                    source_host=row["source_host"],
                    destination_host=row["destination_host"],
                    domain_name=row["domain_name"],
                    ttl_seconds=row["ttl_seconds"],
                    on_backend_mismatch=row["on_backend_mismatch"],
                )
                if not rules.same_request(req, stored):
                    raise Conflict(f"migration {mid} exists with a different request")
                existing = rows.load_migration(c, mid)
                assert existing is not None
                return existing, False
            other = c.execute(
                f"SELECT id FROM migrations WHERE domain_uuid = ? AND {_ACTIVE}",
                (req.domain_uuid,),
            ).fetchone()
            if other is not None:
                raise Conflict(
                    f"domain {req.domain_uuid} already has active migration {other['id']}"
                )
            rev = ctx.next_revision()
            t = rows.to_micros(now)
            c.execute(
                "INSERT INTO migrations (id, domain_uuid, domain_name, source_host,"
                " destination_host, state, on_backend_mismatch, ttl_seconds, created_at,"
                " updated_at, expires_at, revision) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    mid,
                    req.domain_uuid,
                    req.domain_name,
                    req.source_host,
                    req.destination_host,
                    MigrationState.PENDING.value,
                    req.on_backend_mismatch,
                    req.ttl_seconds,
                    t,
                    t,
                    rows.to_micros(now + timedelta(seconds=req.ttl_seconds)),
                    rev,
                ),
            )
            new_row = c.execute("SELECT * FROM migrations WHERE id = ?", (mid,)).fetchone()
            created = rows.migration(new_row, [])
            ctx.keys |= rules.keys_for(created)
            ctx.changes.append(change(new_row, []))
            return created, True

        result: tuple[Migration, bool] = await self._engine.write(op)
        return result

    async def get_migration(self, migration_id: str) -> Migration:
        found = await self._engine.read(lambda c: rows.load_migration(c, migration_id))
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
        where: list[str] = ["seq > ?"]
        args: list[object] = [_parse_cursor(cursor)]
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        if domain_uuid is not None:
            where.append("domain_uuid = ?")
            args.append(domain_uuid)
        if host is not None:
            where.append("(source_host = ? OR destination_host = ?)")
            args += [host, host]
        sql = f"SELECT * FROM migrations WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"

        def q(c: sqlite3.Connection) -> tuple[list[Migration], str | None]:
            found = c.execute(sql, (*args, limit + 1)).fetchall()
            page = found[:limit]
            vifs = rows.fetch_vifs(c, [r["id"] for r in page])
            nxt = str(page[-1]["seq"]) if len(found) > limit else None
            return [rows.migration(r, vifs[r["id"]]) for r in page], nxt

        return await self._engine.read(q)

    async def transition(self, migration_id: str, to: MigrationState, now: datetime) -> Migration:
        def op(c: sqlite3.Connection, ctx: WriteContext) -> Migration:
            current = rows.load_migration(c, migration_id)
            if current is None:
                raise NotFound(f"no migration {migration_id}")
            if not rules.check_transition(current.state, to):
                return current
            return _finish(c, ctx, current, to, now)

        result: Migration = await self._engine.write(op)
        return result

    async def expire(self, now: datetime) -> list[str]:
        def op(c: sqlite3.Connection, ctx: WriteContext) -> list[str]:
            due = c.execute(
                f"SELECT id FROM migrations WHERE {_ACTIVE} AND expires_at <= ?",
                (rows.to_micros(now),),
            ).fetchall()
            for r in due:
                current = rows.load_migration(c, r["id"])
                assert current is not None
                _finish(c, ctx, current, MigrationState.EXPIRED, now)
            return [r["id"] for r in due]

        expired: list[str] = await self._engine.write(op)
        return expired

    async def prune(self, older_than: datetime) -> int:
        def op(c: sqlite3.Connection, ctx: WriteContext) -> int:
            ids = frozenset(
                r[0]
                for r in c.execute(
                    f"DELETE FROM migrations WHERE state IN {rows.TERMINAL_SQL}"
                    " AND updated_at < ? RETURNING id",
                    (rows.to_micros(older_than),),
                )
            )
            if ids:
                ctx.changes.append(Pruned(ids))
            return len(ids)

        pruned: int = await self._engine.write(op)
        return pruned

    # --------------------------------------------------------------- records
    async def active_migration(self, domain_uuid: str) -> Migration:
        def q(c: sqlite3.Connection) -> Migration | None:
            row = c.execute(
                f"SELECT id FROM migrations WHERE domain_uuid = ? AND {_ACTIVE}", (domain_uuid,)
            ).fetchone()
            return rows.load_migration(c, row["id"]) if row else None

        found = await self._engine.read(q)
        if found is None:
            raise NoActiveMigration(f"domain {domain_uuid} has no active migration")
        return found

    async def put_interfaces(
        self,
        domain_uuid: str,
        interfaces: Sequence[Interface],
        now: datetime,
        *,
        if_match: dict[str, int] | None = None,
        source_host: str | None = None,
    ) -> tuple[Migration, list[VifRecord]]:
        rules.check_unique_macs([i.mac for i in interfaces])
        prepared = [(i.mac, *rows.split_interface(i)) for i in interfaces]

        def op(c: sqlite3.Connection, ctx: WriteContext) -> tuple[Migration, list[VifRecord]]:
            row = c.execute(
                f"SELECT * FROM migrations WHERE domain_uuid = ? AND {_ACTIVE}", (domain_uuid,)
            ).fetchone()
            if row is None:
                raise NoActiveMigration(f"domain {domain_uuid} has no active migration")
            if source_host is not None and row["source_host"] != source_host:
                raise WrongHost(f"{source_host} is not the source host of {row['id']}")
            mid = row["id"]
            # Work on the vifs in memory: read once, write the changes, derive the
            # state and the answer from what is already at hand.
            vifs = {
                r["mac"]: dict(r)
                for r in c.execute(
                    "SELECT * FROM vifs WHERE migration_id = ? ORDER BY position", (mid,)
                )
            }
            for mac, expected in (if_match or {}).items():
                have = vifs[mac]["generation"] if mac in vifs else 0
                if have != expected:
                    raise PreconditionFailed(
                        f"{mac} is at generation {have}, not {expected}",
                        mac=mac,
                        current_generation=have,
                    )
            rev = ctx.next_revision()
            position = max((v["position"] for v in vifs.values()), default=-1)
            inserts, updates = [], []
            for mac, iface_json, portdata in prepared:
                old = vifs.get(mac)
                if old is None:
                    position += 1
                    new = {
                        "migration_id": mid,
                        "mac": mac,
                        "position": position,
                        "generation": 1,
                        "interface": iface_json,
                        "portdata": portdata,
                        "status": "pending",
                        "applied_generation": 0,
                        "detail": None,
                        "digest": None,
                        "revision": rev,
                    }
                    vifs[mac] = new
                    inserts.append(new)
                else:
                    old.update(
                        generation=old["generation"] + 1,
                        interface=iface_json,
                        portdata=portdata,
                        status="pending",
                        detail=None,
                        digest=None,
                        revision=rev,
                    )
                    updates.append(old)
            if inserts:
                c.executemany(
                    "INSERT INTO vifs (migration_id, mac, position, generation, interface,"
                    " portdata, status, applied_generation, revision) VALUES (:migration_id,"
                    " :mac, :position, :generation, :interface, :portdata, :status,"
                    " :applied_generation, :revision)",
                    inserts,
                )
            if updates:
                c.executemany(
                    "UPDATE vifs SET generation = :generation, interface = :interface,"
                    " portdata = :portdata, status = 'pending', detail = NULL, digest = NULL,"
                    " revision = :revision WHERE migration_id = :migration_id AND mac = :mac",
                    updates,
                )
            updated = _update_migration(c, ctx, dict(row), list(vifs.values()), rev, now)
            recs = [rows.record(vifs[i.mac], domain_uuid, i) for i in interfaces]
            return updated, recs

        result: tuple[Migration, list[VifRecord]] = await self._engine.write(op)
        return result

    async def latest_migration(self, domain_uuid: str) -> Migration:
        def q(c: sqlite3.Connection) -> Migration | None:
            row = _latest(c, domain_uuid)
            return rows.load_migration(c, row["id"]) if row else None

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

    async def post_results(
        self, migration_id: str, results: Sequence[ResultIn], now: datetime
    ) -> Migration:
        rules.check_unique_macs([r.mac for r in results])

        def op(c: sqlite3.Connection, ctx: WriteContext) -> Migration:
            current = rows.load_migration(c, migration_id)
            if current is None:
                raise NotFound(f"no migration {migration_id}")
            rules.ensure_active(current.state, "post results")
            stored = {
                r["mac"]: r
                for r in c.execute("SELECT * FROM vifs WHERE migration_id = ?", (migration_id,))
            }
            updates = []
            for res in results:
                if res.mac not in stored:
                    raise InvalidInput(f"migration {migration_id} has no interface {res.mac}")
                row = stored[res.mac]
                change = rules.apply_result(res, row["generation"], row["portdata"])
                if change is not None:
                    updates.append((res.mac, change))
            if not updates:
                return current
            rev = ctx.next_revision()
            for mac, ch in updates:
                c.execute(
                    "UPDATE vifs SET status = ?, applied_generation = ?, detail = ?, digest = ?,"
                    " revision = ? WHERE migration_id = ? AND mac = ?",
                    (
                        ch.status.value,
                        ch.applied_generation,
                        ch.detail,
                        ch.digest,
                        rev,
                        migration_id,
                        mac,
                    ),
                )
            return _touch(c, ctx, migration_id, rev, now)

        result: Migration = await self._engine.write(op)
        return result

    # ----------------------------------------------------------------- inbox
    async def inbox(self, host: str, after: int, limit: int = 500) -> Inbox:
        # A reader near the head (a woken long-poll) is answered from memory:
        # no thread hop, no query. Older positions fall back to SQL.
        cached = self.cache.inbox(host, after, limit)
        if cached is not None:
            return cached
        return await self.inbox_sql(host, after, limit)

    async def inbox_sql(self, host: str, after: int, limit: int = 500) -> Inbox:
        """The inbox straight from the database (the watch cache's reference)."""

        def q(c: sqlite3.Connection) -> Inbox:
            current = _revision(c)
            found = c.execute(
                "SELECT * FROM migrations WHERE revision > ? AND"
                " (source_host = ? OR destination_host = ?) ORDER BY revision LIMIT ?",
                (after, host, host, limit + 1),
            ).fetchall()
            page = found[:limit]
            vifs = rows.fetch_vifs(c, [r["id"] for r in page])
            done = []
            for r in page:
                mig = rows.migration(r, vifs[r["id"]])
                done.append((mig, [rows.record(v, mig.domain_uuid) for v in vifs[r["id"]]]))
            return rules.inbox(host, after, done, len(found) > limit, current)

        return await self._engine.read(q)

    async def events(self, after: int, limit: int = 500) -> list[Migration]:
        def q(c: sqlite3.Connection) -> list[Migration]:
            found = c.execute(
                "SELECT * FROM migrations WHERE revision > ? ORDER BY revision LIMIT ?",
                (after, limit),
            ).fetchall()
            vifs = rows.fetch_vifs(c, [r["id"] for r in found])
            return [rows.migration(r, vifs[r["id"]]) for r in found]

        return await self._engine.read(q)

    # ----------------------------------------------------------------- hosts
    async def heartbeat(self, name: str, info: HostIn, now: datetime) -> Host:
        backends = json.dumps([b.model_dump(mode="json") for b in info.backends])

        def op(c: sqlite3.Connection, ctx: WriteContext) -> Host:
            c.execute(
                "INSERT INTO hosts (name, last_seen, agent_version, backends) VALUES (?,?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen,"
                " agent_version = excluded.agent_version, backends = excluded.backends",
                (name, rows.to_micros(now), info.agent_version, backends),
            )
            ctx.keys.add("hosts")
            row = c.execute("SELECT * FROM hosts WHERE name = ?", (name,)).fetchone()
            return rows.host(row)

        result: Host = await self._engine.write(op)
        return result

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


def _latest(c: sqlite3.Connection, domain_uuid: str) -> sqlite3.Row | None:
    """The domain's active migration row, else its newest."""
    row: sqlite3.Row | None = c.execute(
        f"SELECT * FROM migrations WHERE domain_uuid = ? ORDER BY ({_ACTIVE}) DESC, seq DESC"
        " LIMIT 1",
        (domain_uuid,),
    ).fetchone()
    return row


def _revision(c: sqlite3.Connection) -> int:
    row = c.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()
    return int(row[0]) if row else 0


def _parse_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        value = int(cursor)
    except ValueError:
        raise InvalidInput(f"bad cursor {cursor!r}") from None
    if value < 0:
        raise InvalidInput(f"bad cursor {cursor!r}")
    return value


def _touch(
    c: sqlite3.Connection, ctx: WriteContext, mid: str, rev: int, now: datetime
) -> Migration:
    """Re-derive the state of migration ``mid`` after its vifs changed at ``rev``."""
    row = c.execute("SELECT * FROM migrations WHERE id = ?", (mid,)).fetchone()
    vifs = rows.fetch_vifs(c, [mid])[mid]
    return _update_migration(c, ctx, dict(row), vifs, rev, now)


def _update_migration(
    c: sqlite3.Connection,
    ctx: WriteContext,
    row: dict[str, Any],
    vifs: Sequence[rows.Row],
    rev: int,
    now: datetime,
) -> Migration:
    """Store the state implied by ``vifs`` (already written) and answer the migration."""
    state = rules.derive_state(
        MigrationState(row["state"]), (rows.vif_row(v) for v in vifs), row["on_backend_mismatch"]
    )
    row.update(state=state.value, updated_at=rows.to_micros(now), revision=rev)
    c.execute(
        "UPDATE migrations SET state = :state, updated_at = :updated_at, revision = :revision"
        " WHERE id = :id",
        row,
    )
    updated = rows.migration(row, vifs)
    ctx.keys |= rules.keys_for(updated)
    ctx.changes.append(change(row, vifs))
    return updated


def _finish(
    c: sqlite3.Connection, ctx: WriteContext, current: Migration, to: MigrationState, now: datetime
) -> Migration:
    """Move to terminal state ``to`` and purge the port data (outcomes stay)."""
    rev = ctx.next_revision()
    c.execute(
        "UPDATE migrations SET state = ?, updated_at = ?, revision = ? WHERE id = ?",
        (to.value, rows.to_micros(now), rev, current.id),
    )
    c.execute(
        "UPDATE vifs SET portdata = NULL, revision = ? WHERE migration_id = ?", (rev, current.id)
    )
    row = c.execute("SELECT * FROM migrations WHERE id = ?", (current.id,)).fetchone()
    vifs = rows.fetch_vifs(c, [current.id])[current.id]
    updated = rows.migration(row, vifs)
    ctx.keys |= rules.keys_for(updated)
    ctx.changes.append(change(row, vifs))
    return updated
