"""The SQLite schema as numbered upgrade steps (see ``schema`` for the rules).

Step 1 is the schema the first release created without recording a version,
written with IF NOT EXISTS so that such a database takes it as a no-op.
"""

from __future__ import annotations

import sqlite3

from . import schema

TERMINAL_SQL = "('completed', 'cancelled', 'expired')"
ACTIVE_SQL = f"state NOT IN {TERMINAL_SQL}"

STEPS: tuple[str, ...] = (
    # 1: migrations, their vifs, hosts; the revision counter in meta.
    f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS migrations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    domain_uuid TEXT NOT NULL,
    domain_name TEXT,
    source_host TEXT NOT NULL,
    destination_host TEXT NOT NULL,
    state TEXT NOT NULL,
    on_backend_mismatch TEXT NOT NULL,
    ttl_seconds INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revision INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS migrations_one_active ON migrations(domain_uuid)
    WHERE state NOT IN {TERMINAL_SQL};
CREATE INDEX IF NOT EXISTS migrations_revision ON migrations(revision);
CREATE INDEX IF NOT EXISTS migrations_source ON migrations(source_host, revision);
CREATE INDEX IF NOT EXISTS migrations_destination ON migrations(destination_host, revision);
CREATE INDEX IF NOT EXISTS migrations_expiry ON migrations(expires_at)
    WHERE state NOT IN {TERMINAL_SQL};
CREATE TABLE IF NOT EXISTS vifs (
    migration_id TEXT NOT NULL REFERENCES migrations(id) ON DELETE CASCADE,
    mac TEXT NOT NULL,
    position INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    interface TEXT NOT NULL,
    portdata TEXT,
    status TEXT NOT NULL,
    applied_generation INTEGER NOT NULL,
    detail TEXT,
    digest TEXT,
    revision INTEGER NOT NULL,
    PRIMARY KEY (migration_id, mac)
);
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL,
    agent_version TEXT,
    backends TEXT NOT NULL
);
""",
    # 2: each migration counts its vifs by outcome (rules.Tally), so an upload
    # updates the state without reading every vif; vif_count is also the next
    # position. A "skipped" under on_backend_mismatch=fail is recorded as
    # failed from now on (rules.apply_result): earlier ones become so here.
    # Existing migrations are counted once.
    """
ALTER TABLE migrations ADD COLUMN vif_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE migrations ADD COLUMN vifs_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE migrations ADD COLUMN vifs_failed INTEGER NOT NULL DEFAULT 0;
UPDATE vifs SET status = 'failed' WHERE status = 'skipped' AND migration_id IN
    (SELECT id FROM migrations WHERE on_backend_mismatch = 'fail');
UPDATE migrations SET
    vif_count = (SELECT count(*) FROM vifs v WHERE v.migration_id = migrations.id),
    vifs_done = (SELECT count(*) FROM vifs v WHERE v.migration_id = migrations.id
        AND v.applied_generation = v.generation AND v.status IN ('applied', 'skipped')),
    vifs_failed = (SELECT count(*) FROM vifs v WHERE v.migration_id = migrations.id
        AND v.applied_generation = v.generation AND v.status = 'failed');
""",
    # 3: the timeline (when each vif was uploaded and applied, when the guest
    # resumed), who registered a migration (an agent's host; NULL: a
    # controller), and the domains each host reported running.
    """
ALTER TABLE vifs ADD COLUMN uploaded_at INTEGER;
ALTER TABLE vifs ADD COLUMN applied_at INTEGER;
ALTER TABLE migrations ADD COLUMN resumed_at INTEGER;
ALTER TABLE migrations ADD COLUMN registered_by TEXT;
ALTER TABLE hosts ADD COLUMN running_domains TEXT NOT NULL DEFAULT '[]';
""",
    # 4: the host indexes without the revision. Every upload and result moves
    # its migration's revision, and each index holding it moves an entry: a
    # page more for the COMMIT to append to the WAL and wait on (six pages a
    # handoff's upload, four now; bench/ab_handoff.py: 0.04-0.06 of the floor
    # faster). A host's inbox read from SQL (a reader far behind the watch
    # cache) now goes through all of that host's migrations, not only those
    # after its position; the listing by host (newest first, by seq) gains.
    """
DROP INDEX IF EXISTS migrations_source;
DROP INDEX IF EXISTS migrations_destination;
CREATE INDEX IF NOT EXISTS migrations_source ON migrations(source_host);
CREATE INDEX IF NOT EXISTS migrations_destination ON migrations(destination_host);
""",
)

LATEST = len(STEPS)

_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_versions (
    version INTEGER PRIMARY KEY,
    broker_version TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (datetime('now'))
)
"""


def current(conn: sqlite3.Connection) -> tuple[int, str | None]:
    """The database's schema version and the broker that wrote it (0 for an empty file)."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_versions'"
    ).fetchone()
    if has_table:
        row = conn.execute(schema.NEWEST_STEP_SQL).fetchone()
        if row is not None:
            return int(row[0]), str(row[1])
    return 0, None


def upgrade(conn: sqlite3.Connection, *, allow: bool, url: str) -> int:
    """Bring the schema to ``LATEST``, one step per transaction; the version it is at.

    The version is read again inside each step's write lock, so brokers
    starting together on one file run each step once.
    """
    conn.execute(_VERSIONS)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            found, written_by = current(conn)
            steps = schema.plan(found, LATEST, upgrade=allow, written_by=written_by, url=url)
            if not steps:
                conn.execute("COMMIT")
                return found
            step = steps[0]
            for statement in STEPS[step - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions (version, broker_version) VALUES (?, ?)",
                (step, schema.broker_version()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
