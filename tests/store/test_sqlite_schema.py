"""SQLite schema versions: a first-release file is upgraded in place, counts included;
an older broker refuses a newer schema and says which version to run."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vifbroker.model import Interface, MigrationCreate, MigrationState, ResultIn
from vifbroker.store import SchemaMismatch
from vifbroker.store.sqlite import SQLiteStore
from vifbroker.store.sqlite_engine import PAGE_SIZE
from vifbroker.store.sqlite_schema import LATEST, STEPS

DOM = "6f1a3c2e-0000-4000-8000-0000000000aa"
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _first_release_file(path: Path) -> None:
    """A database as the first release left it: step 1's tables, no version recorded."""
    conn = sqlite3.connect(path)
    conn.executescript(STEPS[0])
    conn.close()


async def test_unversioned_file_is_upgraded_and_its_vifs_counted(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _first_release_file(path)
    # Write through a store held at step 1's shape: insert rows by hand as release 1 did.
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO migrations (id, domain_uuid, source_host, destination_host, state,"
        " on_backend_mismatch, ttl_seconds, created_at, updated_at, expires_at, revision)"
        " VALUES ('m', ?, 'a', 'b', 'uploaded', 'skip', 3600, 0, 0, 9999999999999999, 3)",
        (DOM,),
    )
    for pos, (mac, status, applied) in enumerate(
        [("52:54:00:00:00:01", "applied", 1), ("52:54:00:00:00:02", "pending", 0)]
    ):
        conn.execute(
            "INSERT INTO vifs VALUES ('m', ?, ?, 1, ?, 'pd', ?, ?, NULL, NULL, 3)",
            (mac, pos, Interface(mac=mac).model_dump_json(), status, applied),
        )
    conn.execute("INSERT INTO meta VALUES ('revision', 3)")
    conn.commit()
    conn.close()

    with pytest.raises(SchemaMismatch, match="vifbroker db upgrade"):
        await SQLiteStore(path, upgrade=False).open()

    store = SQLiteStore(path)
    await store.open()
    try:
        assert await store.current_revision() == 3
        # The counts taken at upgrade decide the state from here on.
        m = await store.post_results(
            "m", [ResultIn(mac="52:54:00:00:00:02", generation=1, status="skipped")], T0
        )
        assert m.state is MigrationState.APPLIED
        up = await store.put_interfaces(DOM, [Interface(mac="52:54:00:00:00:03")], T0)
        assert up.state is MigrationState.UPLOADED
        recs = await store.get_interfaces(DOM)
        assert [r.mac for r in recs][-1] == "52:54:00:00:00:03"
    finally:
        await store.close()
    versions = sqlite3.connect(path).execute("SELECT max(version) FROM schema_versions")
    assert versions.fetchone()[0] == LATEST


async def test_a_newer_schema_is_refused_naming_the_broker_that_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = SQLiteStore(path)
    await store.open()
    await store.create_migration(
        MigrationCreate(domain_uuid=DOM, source_host="a", destination_host="b"), T0
    )
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO schema_versions (version, broker_version) VALUES (?, '9.9.9')", (LATEST + 1,)
    )
    conn.commit()
    conn.close()
    with pytest.raises(SchemaMismatch, match=r"version \d+.*vifbroker 9\.9\.9; run that version"):
        await SQLiteStore(path).open()


async def test_a_fresh_file_needs_an_upgrade_too(tmp_path: Path) -> None:
    with pytest.raises(SchemaMismatch, match="version 0"):
        await SQLiteStore(tmp_path / "empty.db", upgrade=False).open()


async def test_a_new_database_is_private_to_the_broker(tmp_path: Path) -> None:
    path = tmp_path / "state" / "vifbroker.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.create_migration(
            MigrationCreate(domain_uuid=DOM, source_host="a", destination_host="b"), T0
        )
        for name in ("vifbroker.db", "vifbroker.db-wal", "vifbroker.db-shm"):
            assert (path.parent / name).stat().st_mode & 0o777 == 0o600, name
        assert path.parent.stat().st_mode & 0o777 == 0o700
    finally:
        await store.close()


def _page_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


async def test_a_new_database_has_small_pages_and_an_old_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    # Smaller pages: fewer bytes for each COMMIT's fsync (see sqlite_engine.connect).
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    _first_release_file(old)  # SQLite's default pages, as every file before had
    default = _page_size(old)
    assert default != PAGE_SIZE
    for path in (new, old):
        store = SQLiteStore(path)
        await store.open()
        try:
            await store.create_migration(
                MigrationCreate(domain_uuid=DOM, source_host="a", destination_host="b"), T0
            )
            # Port data over two pages of the new size: its row overflows.
            port = {"type": "openvswitch", "portdata": "x" * 5000}
            iface = Interface.model_validate({"mac": "52:54:00:00:00:01", "virtualport": port})
            await store.put_interfaces(DOM, [iface], T0, source_host="a")
        finally:
            await store.close()
        store = SQLiteStore(path)
        await store.open()
        try:
            (record,) = await store.get_interfaces(DOM)  # read from the file, not a cache
            assert record.generation == 1
            assert record.interface is not None and record.interface.portdata == "x" * 5000
        finally:
            await store.close()
    assert _page_size(new) == PAGE_SIZE
    assert _page_size(old) == default


async def test_the_host_indexes_leave_the_revision_out(tmp_path: Path) -> None:
    # Each index holding a migration's revision is one more page every upload
    # and result writes (schema step 4); an older file is brought in line.
    for name, make in (("new.db", None), ("old.db", _first_release_file)):
        path = tmp_path / name
        if make is not None:
            make(path)
        store = SQLiteStore(path)
        await store.open()
        await store.close()
        conn = sqlite3.connect(path)
        try:
            for index, column in (
                ("migrations_source", "source_host"),
                ("migrations_destination", "destination_host"),
            ):
                cols = [r[2] for r in conn.execute(f"PRAGMA index_info({index})")]
                assert cols == [column], (name, index, cols)
            revision = [r[2] for r in conn.execute("PRAGMA index_info(migrations_revision)")]
            assert revision == ["revision"]  # the event stream's
        finally:
            conn.close()
