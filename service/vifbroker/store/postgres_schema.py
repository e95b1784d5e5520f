"""The PostgreSQL schema as numbered upgrade steps (see ``schema`` for the rules).

Same tables and columns as SQLite (times as integer microseconds) so that one
set of row conversions (``rows``) serves both. Revisions come from the
``revisions`` sequence; ``meta.revision`` is the newest committed one. Every
replica may run the upgrade at start: an advisory lock makes them take turns,
and each step re-reads the version inside its transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .postgres_engine import Conn

from . import schema

TERMINAL_SQL = "('completed', 'cancelled', 'expired')"

#: Advisory lock keys (any constant; one namespace per purpose).
UPGRADE_LOCK = 0x76696662_0001  # "vifb" 1
WRITE_LOCK = 0x76696662_0002  # every write transaction, see postgres_engine

STEPS: tuple[str, ...] = (
    # 1: everything, counts included (PostgreSQL arrived after SQLite's step 2).
    f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO meta (key, value) VALUES ('revision', 0);
CREATE SEQUENCE revisions AS BIGINT MINVALUE 1;
CREATE TABLE migrations (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    domain_uuid TEXT NOT NULL,
    domain_name TEXT,
    source_host TEXT NOT NULL,
    destination_host TEXT NOT NULL,
    state TEXT NOT NULL,
    on_backend_mismatch TEXT NOT NULL,
    ttl_seconds INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revision BIGINT NOT NULL,
    vif_count INTEGER NOT NULL DEFAULT 0,
    vifs_done INTEGER NOT NULL DEFAULT 0,
    vifs_failed INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX migrations_one_active ON migrations (domain_uuid)
    WHERE state NOT IN {TERMINAL_SQL};
CREATE INDEX migrations_revision ON migrations (revision);
CREATE INDEX migrations_source ON migrations (source_host, revision);
CREATE INDEX migrations_destination ON migrations (destination_host, revision);
CREATE INDEX migrations_expiry ON migrations (expires_at) WHERE state NOT IN {TERMINAL_SQL};
CREATE INDEX migrations_pruning ON migrations (updated_at) WHERE state IN {TERMINAL_SQL};
CREATE TABLE vifs (
    migration_id TEXT NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
    mac TEXT NOT NULL,
    position INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    interface TEXT NOT NULL,
    portdata TEXT,
    status TEXT NOT NULL,
    applied_generation INTEGER NOT NULL,
    detail TEXT,
    digest TEXT,
    revision BIGINT NOT NULL,
    PRIMARY KEY (migration_id, mac)
);
CREATE TABLE hosts (
    name TEXT PRIMARY KEY,
    last_seen BIGINT NOT NULL,
    agent_version TEXT,
    backends TEXT NOT NULL
);
""",
    # 2: the timeline (when each vif was uploaded and applied, when the guest
    # resumed), who registered a migration, the domains each host runs (as
    # SQLite's step 3).
    """
ALTER TABLE vifs ADD COLUMN uploaded_at BIGINT;
ALTER TABLE vifs ADD COLUMN applied_at BIGINT;
ALTER TABLE migrations ADD COLUMN resumed_at BIGINT;
ALTER TABLE migrations ADD COLUMN registered_by TEXT;
ALTER TABLE hosts ADD COLUMN running_domains TEXT NOT NULL DEFAULT '[]';
""",
)

LATEST = len(STEPS)

_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_versions (
    version INTEGER PRIMARY KEY,
    broker_version TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


async def current(conn: Conn) -> tuple[int, str | None]:
    """The database's schema version and the broker that wrote it (0 for an empty database)."""
    if await conn.fetchval("SELECT to_regclass('schema_versions')") is None:
        return 0, None
    row = await conn.fetchrow(schema.NEWEST_STEP_SQL)
    return (int(row["version"]), str(row["broker_version"])) if row else (0, None)


async def upgrade(conn: Conn, *, allow: bool, url: str) -> int:
    """Bring the schema to ``LATEST`` in one transaction (PostgreSQL's DDL is
    transactional: a failed step leaves the database as it was); the version."""
    async with conn.transaction():
        # A session lock would outlive a dropped connection's pool slot; this one
        # ends with the transaction, and the steps run in it.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", UPGRADE_LOCK)
        await conn.execute(_VERSIONS)
        found, written_by = await current(conn)
        for step in schema.plan(found, LATEST, upgrade=allow, written_by=written_by, url=url):
            await conn.execute(STEPS[step - 1])
            await conn.execute(
                "INSERT INTO schema_versions (version, broker_version) VALUES ($1, $2)",
                step,
                schema.broker_version(),
            )
    return LATEST
