"""The SQLite store plans an upload on what its watch cache holds, not on a SELECT.

The cache holds each recently changed migration's rows as committed, so an
upload to it (a handoff's, most of an upload storm's) reads nothing. Another
process writing to the file makes those rows untrustworthy: the next batch
sees it (``PRAGMA data_version``), reads SQL again and starts the cache over.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqltrace import selects, statements

from vifbroker.model import Interface, MigrationCreate
from vifbroker.store import StoreUnavailable
from vifbroker.store.sqlite import SQLiteStore

DOM = "6f1a3c2e-0000-4000-8000-000000000002"
MAC = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


def create() -> MigrationCreate:
    return MigrationCreate(domain_uuid=DOM, source_host="src", destination_host="dst")


async def test_an_upload_to_a_held_migration_selects_nothing(store: SQLiteStore) -> None:
    m, _ = await store.create_migration(create(), T0)
    with statements(store) as seen:
        first = await store.put_interfaces(DOM, [Interface(mac=MAC)], T0, source_host="src")
        again = await store.put_interfaces(
            DOM, [Interface(mac=MAC), Interface(mac=MAC2)], T0, source_host="src"
        )
    assert first.generations == [(MAC, 1)]
    assert again.generations == [(MAC, 2), (MAC2, 1)]
    assert selects(seen) == []
    stored = await store.get_migration(m.id)
    assert [(v.mac, v.generation) for v in stored.interfaces] == [(MAC, 2), (MAC2, 1)]
    counted = sqlite3.connect(store.path).execute(
        "SELECT vif_count FROM migrations WHERE id = ?", (m.id,)
    )
    assert counted.fetchone() == (2,)  # the counts planned on the cached row


async def test_an_upload_refused_by_the_cached_row_writes_nothing(store: SQLiteStore) -> None:
    await store.create_migration(create(), T0)
    await store.put_interfaces(DOM, [Interface(mac=MAC)], T0, source_host="src")
    with statements(store) as seen, pytest.raises(Exception, match="not the source host"):
        await store.put_interfaces(DOM, [Interface(mac=MAC)], T0, source_host="dst")
    assert selects(seen) == []
    up = await store.put_interfaces(DOM, [Interface(mac=MAC)], T0, source_host="src")
    assert up.generations == [(MAC, 2)]


async def test_a_write_by_another_process_is_read_from_sql(
    store: SQLiteStore, tmp_path: Path
) -> None:
    m, _ = await store.create_migration(create(), T0)
    await store.put_interfaces(DOM, [Interface(mac=MAC)], T0, source_host="src")
    # Another process (an operator's sqlite3 shell, say) moves the vif on.
    other = sqlite3.connect(tmp_path / "vifbroker.db", isolation_level=None)
    try:
        other.execute("UPDATE vifs SET generation = 7 WHERE migration_id = ?", (m.id,))
    finally:
        other.close()
    with statements(store) as seen:
        up = await store.put_interfaces(DOM, [Interface(mac=MAC)], T0, source_host="src")
    assert up.generations == [(MAC, 8)]  # not 2: the cached row was stale
    assert selects(seen)
    # The cache started over with what SQL holds: both answer alike.
    page = await store.inbox("dst", 0)
    assert page == await store.inbox_sql("dst", 0)
    assert [r.generation for r in page.items[-1].interfaces] == [8]
    # and it is trusted again for the next upload
    with statements(store) as seen:
        up = await store.put_interfaces(DOM, [Interface(mac=MAC)], T0, source_host="src")
    assert up.generations == [(MAC, 9)]
    assert selects(seen) == []


def vif_writes(seen: list[str]) -> list[str]:
    """How each statement writing vif rows starts (INSERT or UPDATE)."""
    writes = [sql for sql in seen if " vifs " in f" {sql} " and "SELECT" not in sql]
    return [sql.split()[0].upper() for sql in writes]


async def test_a_stored_vif_is_updated_in_place_and_a_new_one_inserted(
    store: SQLiteStore,
) -> None:
    m, _ = await store.create_migration(create(), T0)
    with statements(store) as seen:
        await store.put_interfaces(DOM, [Interface(mac=MAC)], T0, source_host="src")
    assert vif_writes(seen) == ["INSERT"]
    with statements(store) as seen:
        again = await store.put_interfaces(
            DOM, [Interface(mac=MAC), Interface(mac=MAC2)], T0, source_host="src"
        )
    # the stored one: a primary-key UPDATE (no upsert's failed INSERT, no
    # foreign-key probe); the new one: an INSERT
    assert vif_writes(seen) == ["UPDATE", "INSERT"]
    assert again.generations == [(MAC, 2), (MAC2, 1)]
    stored = await store.get_migration(m.id)
    assert [(v.mac, v.generation, v.status.value) for v in stored.interfaces] == [
        (MAC, 2, "pending"),
        (MAC2, 1, "pending"),
    ]
    assert await store.get_migration(m.id) == await store.migration_sql(m.id)


async def test_two_stores_on_one_file_never_take_the_same_revision(tmp_path: Path) -> None:
    # Another process writing the same file (a broker refuses a second broker,
    # see below, but a file allows it) takes revisions too: each batch after
    # another process's commit goes on after the last revision stored, or a
    # destination's `after` would skip a change.
    path = tmp_path / "shared.db"
    a, b = SQLiteStore(path, exclusive=False), SQLiteStore(path, exclusive=False)
    await a.open()
    await b.open()
    try:
        revisions = []
        for i, store in enumerate((a, b, b, a, b)):
            dom = f"6f1a3c2e-0000-4000-8000-00000000010{i}"
            made, _ = await store.create_migration(
                MigrationCreate(domain_uuid=dom, source_host="src", destination_host="dst"), T0
            )
            revisions.append(made.revision)
        assert revisions == sorted(set(revisions)), revisions
        inbox = await a.inbox_sql("dst", 0)
        assert [item.revision for item in inbox.items] == revisions
    finally:
        await a.close()
        await b.close()


async def test_a_second_store_on_a_held_file_is_refused_and_the_file_is_free_after_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "held.db"
    first = SQLiteStore(path)
    await first.open()
    try:
        held = rf"in use by another vifbroker .*pid {os.getpid()}"
        with pytest.raises(StoreUnavailable, match=held):
            await SQLiteStore(path).open()
        # the refused one touched nothing: the holder still writes and reads
        made, _ = await first.create_migration(
            MigrationCreate(
                domain_uuid="6f1a3c2e-0000-4000-8000-000000000201",
                source_host="src",
                destination_host="dst",
            ),
            T0,
        )
    finally:
        await first.close()
    second = SQLiteStore(path)
    await second.open()  # closed: the lock went with it
    try:
        assert (await second.get_migration(made.id)).revision == made.revision
    finally:
        await second.close()
