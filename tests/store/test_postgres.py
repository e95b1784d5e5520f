"""What only the PostgreSQL store promises: several replicas on one database.

Each test opens two stores (two replicas) on one fresh database of the
session's real PostgreSQL (tests/pg_harness.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from pg_harness import PgCluster
from testkit import wait_until
from vifbroker.model import Interface, MigrationCreate, MigrationState
from vifbroker.store import Conflict, SchemaMismatch, StoreUnavailable
from vifbroker.store.postgres import PostgresStore, redacted
from vifbroker.store.postgres_engine import LISTENER_NAME
from vifbroker.store.postgres_schema import LATEST

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MAC = "52:54:00:00:00:01"
Replica = Callable[..., Awaitable[PostgresStore]]


def dom(n: int) -> str:
    return f"6f1a3c2e-0000-4000-8000-{n:012d}"


def req(n: int, **kw: object) -> MigrationCreate:
    return MigrationCreate.model_validate(
        {"domain_uuid": dom(n), "source_host": "a", "destination_host": "b"} | kw
    )


@pytest.fixture
async def replica(pg_dsn: str) -> AsyncIterator[Replica]:
    opened: list[PostgresStore] = []

    async def start(**kw: object) -> PostgresStore:
        store = PostgresStore(pg_dsn, **kw)  # type: ignore[arg-type]
        await store.open()
        opened.append(store)
        return store

    yield start
    for store in reversed(opened):
        await store.close()


async def test_an_upload_on_one_replica_wakes_a_long_poll_on_another(replica: Replica) -> None:
    a, b = await replica(), await replica()
    await a.create_migration(req(1), T0)
    await wait_until(lambda: b.hub.revision == a.hub.revision)
    waiter = asyncio.create_task(b.hub.wait(["host:b"], 10))
    await asyncio.sleep(0)
    up = await a.put_interfaces(dom(1), [Interface(mac=MAC)], T0)
    assert await asyncio.wait_for(waiter, 10) is True
    box = await b.inbox("b", up.revision - 1)
    assert [i.interfaces[0].generation for i in box.items] == [1]
    assert b.hub.revision >= up.revision


async def test_one_active_migration_per_domain_across_replicas(replica: Replica) -> None:
    a, b = await replica(), await replica()
    outcomes = await asyncio.gather(
        *(s.create_migration(req(7), T0) for s in (a, b, a, b)), return_exceptions=True
    )
    created = [o for o in outcomes if isinstance(o, tuple)]
    assert len(created) == 1, outcomes
    assert all(isinstance(o, Conflict) for o in outcomes if not isinstance(o, tuple))


async def test_concurrent_expiry_ends_each_migration_once(replica: Replica) -> None:
    a, b = await replica(), await replica()
    ids = [(await a.create_migration(req(n, ttl_seconds=5), T0))[0].id for n in range(20)]
    later = T0 + timedelta(seconds=6)
    expired = await asyncio.gather(*(s.expire(later) for s in (a, b, a, b)))
    flat = [i for batch in expired for i in batch]
    assert sorted(flat) == sorted(ids)  # each once, by whichever replica got there first
    assert {(await b.get_migration(i)).state for i in ids} == {MigrationState.EXPIRED}


async def test_revisions_across_replicas_are_read_in_order_without_gaps(
    replica: Replica,
) -> None:
    a, b = await replica(), await replica()
    for n in range(10):
        await a.create_migration(req(n), T0)
    after = await b.current_revision()
    seen: list[int] = []
    stop = asyncio.Event()

    async def reader() -> None:
        nonlocal after
        while True:
            box = await b.inbox("b", after, limit=3)
            seen.extend(i.revision for i in box.items)
            if box.revision == after and stop.is_set():
                return
            after = box.revision
            if not box.items:
                await b.hub.wait(["host:b"], 0.2)

    async def writer(store: PostgresStore, n: int) -> None:
        for gen in range(3):
            await store.put_interfaces(dom(n), [Interface(mac=MAC, target_dev=f"v{gen}")], T0)

    task = asyncio.create_task(reader())
    await asyncio.gather(*(writer(a if n % 2 else b, n) for n in range(10)))
    stop.set()
    await asyncio.wait_for(task, 20)
    assert seen == sorted(set(seen))
    final = await b.inbox("b", 0)
    # The last change of every migration was delivered.
    assert {i.revision for i in final.items} <= set(seen)


async def test_a_lost_listener_reconnects_and_wakes_what_it_may_have_missed(
    replica: Replica, pg_cluster: PgCluster, pg_dsn: str
) -> None:
    a, b = await replica(), await replica()
    await a.create_migration(req(1), T0)
    await b.probe_write(5)
    waiter = asyncio.create_task(b.hub.wait(["host:b"], 30))
    await asyncio.sleep(0)
    # Cut every LISTEN connection (both replicas'), then write at once: the
    # notification may reach nobody, but the reconnect must wake the waiter.
    database = pg_dsn.rsplit("/", 1)[1]
    cut = pg_cluster.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{database}' AND application_name = '{LISTENER_NAME}'"
    )
    assert cut.split() == ["t", "t"], cut  # both replicas' listeners were cut
    await a.put_interfaces(dom(1), [Interface(mac=MAC)], T0)
    assert await asyncio.wait_for(waiter, 20) is True
    await wait_until(lambda: b._engine.listening.is_set(), 20)
    await b.probe_write(5)


async def test_database_down_then_up_without_reopening(
    replica: Replica, pg_cluster: PgCluster
) -> None:
    a = await replica(timeout=3.0)
    await a.create_migration(req(1), T0)
    pg_cluster.stop(mode="immediate")
    try:
        with pytest.raises(StoreUnavailable):
            await a.put_interfaces(dom(1), [Interface(mac=MAC)], T0)
        with pytest.raises(StoreUnavailable):
            await a.probe_write(2)
    finally:
        pg_cluster.start()

    async def writable() -> bool:
        try:
            await a.probe_write(2)
            await a.put_interfaces(dom(1), [Interface(mac=MAC)], T0)
        except StoreUnavailable:
            return False
        return True

    await wait_until(writable, 30, interval=0.2)
    assert (await a.get_interfaces(dom(1)))[0].generation >= 1


async def test_schema_version_is_checked_at_open(
    replica: Replica, pg_cluster: PgCluster, pg_dsn: str
) -> None:
    await replica()  # creates the schema
    database = pg_dsn.rsplit("/", 1)[1]
    pg_cluster.psql(
        f"INSERT INTO schema_versions (version, broker_version) VALUES ({LATEST + 1}, '9.9.9')",
        database,
    )
    with pytest.raises(SchemaMismatch, match=r"vifbroker 9\.9\.9; run that version or newer"):
        await replica()


async def test_an_empty_database_is_refused_without_upgrade(replica: Replica) -> None:
    with pytest.raises(SchemaMismatch, match="vifbroker db upgrade"):
        await replica(upgrade=False)


def test_passwords_stay_out_of_messages() -> None:
    assert redacted("postgresql://u:s3cret@h1:5432,h2/db") == "postgresql://u:***@h1:5432,h2/db"
    assert redacted("postgresql://u@h/db") == "postgresql://u@h/db"


async def test_a_multi_host_dsn_finds_the_writable_server(pg_dsn: str) -> None:
    # The first host refuses connections (a failed-over primary): libpq-style
    # multi-host DSNs with target_session_attrs move on to the next one.
    head, _, rest = pg_dsn.partition("@")
    dsn = f"{head}@127.0.0.1:1,{rest}?target_session_attrs=read-write"
    store = PostgresStore(dsn)
    await store.open()
    try:
        m, created = await store.create_migration(req(3), T0)
        assert created and (await store.get_migration(m.id)).id == m.id
        await store.probe_write(5)
    finally:
        await store.close()


async def test_close_does_not_hang_while_the_database_is_down(
    pg_dsn: str, pg_cluster: PgCluster
) -> None:
    store = PostgresStore(pg_dsn, timeout=2.0)
    await store.open()
    await store.create_migration(req(4), T0)
    pg_cluster.stop(mode="immediate")
    try:
        await asyncio.wait_for(store.close(), 15)
    finally:
        pg_cluster.start()
    with pytest.raises(StoreUnavailable):
        await store.put_interfaces(dom(4), [Interface(mac=MAC)], T0)
