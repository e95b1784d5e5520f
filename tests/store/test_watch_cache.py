"""The SQLite store's watch cache answers the inbox exactly as SQL does.

A randomized history (concurrent writes sharing commits, refused writes rolled
back inside a batch, results, terminal moves, expiry, pruning) runs against a
store with a small cache so that eviction raises the floor along the way;
after every step both paths answer every host for positions from the floor to
past the head, with small and large limits, and must agree byte for byte: as
models, and in wire form (the texts the cache keeps rendered across the history).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from testkit import no_loop_blocking
from vifbroker.model import Interface, MigrationCreate, MigrationState, ResultIn, portdata_digest
from vifbroker.model.wire import page_of
from vifbroker.store import NotFound, StoreError
from vifbroker.store.sqlite import SQLiteStore

HOSTS = ("a", "b", "c", "d")
DOMAINS = [f"6f1a3c2e-0000-4000-8000-00000000000{i}" for i in range(1, 7)]
MACS = [f"52:54:00:00:00:0{i}" for i in range(1, 5)]
PORTDATA = [None, "pd", "ovn:" + "x" * 300, "ünïcødé ✓ <&>", 'line\nbreak\t"quoted"']
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

Open = Callable[..., Awaitable[SQLiteStore]]


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[Open]:
    opened: list[SQLiteStore] = []

    async def factory(**kw: Any) -> SQLiteStore:
        store = SQLiteStore(tmp_path / "vifbroker.db", **kw)
        await store.open()
        opened.append(store)
        return store

    async with no_loop_blocking():
        yield factory
        for store in reversed(opened):
            await store.close()


def _iface(rng: random.Random, mac: str) -> Interface:
    doc: dict[str, Any] = {"mac": mac, "type": rng.choice(["bridge", "ethernet"])}
    if rng.random() < 0.7:
        doc["source"] = {"bridge": rng.choice(["br-int", "br-ex"])}
    if rng.random() < 0.8:
        vp: dict[str, Any] = {"type": rng.choice(["openvswitch", None])}
        if rng.random() < 0.5:
            vp["parameters"] = {"interfaceid": f"id-{rng.randrange(100)}"}
        vp["portdata"] = rng.choice(PORTDATA)
        doc["virtualport"] = vp
    return Interface.model_validate(doc)


async def _random_op(store: SQLiteStore, rng: random.Random, now: datetime) -> None:
    domain = rng.choice(DOMAINS)
    kind = rng.choices(
        ["create", "put", "results", "finish", "expire", "prune"], [3, 6, 3, 1, 1, 1]
    )[0]
    if kind == "create":
        src, dst = rng.sample(HOSTS, 2)
        await store.create_migration(
            MigrationCreate(
                domain_uuid=domain,
                source_host=src,
                destination_host=dst,
                ttl_seconds=rng.choice([5, 30, 3600]),
                on_backend_mismatch=rng.choice(["skip", "fail"]),
                id=rng.choice([None, None, f"m-{rng.randrange(8)}"]),
            ),
            now,
        )
    elif kind == "put":
        macs = rng.sample(MACS, rng.randint(1, 3))
        if_match = {macs[0]: rng.randrange(3)} if rng.random() < 0.3 else None
        await store.put_interfaces(
            domain,
            [_iface(rng, m) for m in macs],
            now,
            if_match=if_match,
            source_host=rng.choice([None, *HOSTS]),
        )
    elif kind == "results":
        records = await store.get_interfaces(domain)
        results = []
        for rec in rng.sample(records, rng.randint(1, len(records))):
            pd = rec.interface.portdata if rec.interface is not None else None
            results.append(
                ResultIn(
                    mac=rec.mac,
                    generation=max(1, rec.generation - rng.choice([0, 0, 1])),
                    status=rng.choice(["applied", "skipped", "failed"]),
                    digest=portdata_digest(rng.choice([pd, pd, "other"])),
                )
            )
        mid = (await store.latest_migration(domain)).id
        await store.post_results(mid, results, now)
    elif kind == "finish":
        mid = (await store.latest_migration(domain)).id
        to = rng.choice([MigrationState.COMPLETED, MigrationState.CANCELLED])
        await store.transition(mid, to, now)
    elif kind == "expire":
        await store.expire(now)
    else:
        await store.prune(now - timedelta(seconds=rng.choice([0, 20, 60])))


async def _assert_same(store: SQLiteStore, rng: random.Random) -> int:
    """Compare both paths everywhere the cache answers; the number of comparisons."""
    head, floor = store.cache.revision, store.cache.floor
    afters = {floor, floor + 1, head - 1, head, head + 3, rng.randint(floor, head)}
    compared = 0
    for host in (*HOSTS, "nobody"):
        for after in sorted(a for a in afters if a >= floor):
            for limit in (1, 3, 500):
                cached = store.cache.inbox(host, after, limit)
                assert cached is not None
                expected = await store.inbox_sql(host, after, limit)
                assert cached.model_dump_json() == expected.model_dump_json(), (host, after)
                # The wire form, from texts kept across the history (rendered once per
                # row): the bytes the SQL answer renders to.
                page = await store.inbox_page(host, after, limit)
                assert page.json() == page_of(expected).json(), (host, after, limit)
                compared += 1
    # The event stream's migrations, as models and as JSON text.
    for after in sorted(a for a in afters if a >= floor):
        for limit in (1, 3, 500):
            want = await store.events_sql(after, limit)
            assert [m.model_dump_json() for m in await store.events(after, limit)] == [
                m.model_dump_json() for m in want
            ]
            assert await store.events_page(after, limit) == [
                (m.revision, m.model_dump_json()) for m in want
            ]
            compared += 1
    # A held migration is read from memory, as SQL reads it.
    for mid in store.cache.held():
        cached_migration = store.cache.migration(mid)
        if cached_migration is not None:
            expected_migration = await store.migration_sql(mid)
            assert cached_migration.model_dump_json() == expected_migration.model_dump_json()
            compared += 1
    return compared


@pytest.mark.parametrize(
    ("seed", "entries", "size"),
    [(1, 4096, 1 << 25), (2, 12, 1 << 25), (3, 4096, 3000), (4, 20, 8_000), (5, 1, 1 << 25)],
)
async def test_cache_and_sql_give_the_same_inbox(
    open_store: Open, seed: int, entries: int, size: int
) -> None:
    rng = random.Random(seed)
    store = await open_store(cache_entries=entries, cache_bytes=size)
    now = T0
    compared = 0
    for _ in range(80):
        now += timedelta(seconds=rng.choice([0, 1, 7]))
        # Several writes at once share a commit; refused ones roll back inside it.
        group = [_random_op(store, rng, now) for _ in range(rng.randint(1, 4))]
        for outcome in await asyncio.gather(*group, return_exceptions=True):
            if not isinstance(outcome, StoreError | ValueError):
                assert outcome is None
        assert store.cache.revision == (await store.inbox_sql("nobody", 0)).revision
        compared += await _assert_same(store, rng)
    assert compared > 0
    if entries < 4096 or size < 1 << 25:
        assert store.cache.floor > 0, "the bounds never evicted anything"
    assert len(store.cache) <= entries


async def test_prune_leaves_the_cache(open_store: Open) -> None:
    store = await open_store()
    m, _ = await store.create_migration(
        MigrationCreate(domain_uuid=DOMAINS[0], source_host="a", destination_host="b"), T0
    )
    await store.transition(m.id, MigrationState.COMPLETED, T0)
    assert len((await store.inbox("b", 0)).items) == 1
    assert await store.prune(T0 + timedelta(seconds=1)) == 1
    assert (await store.inbox("b", 0)).items == []
    assert len(store.cache) == 0
    with pytest.raises(NotFound):
        await store.get_migration(m.id)


async def test_restarted_store_starts_with_an_empty_cache(open_store: Open) -> None:
    first = await open_store()
    m, _ = await first.create_migration(
        MigrationCreate(domain_uuid=DOMAINS[0], source_host="a", destination_host="b"), T0
    )
    await first.put_interfaces(DOMAINS[0], [Interface(mac=MACS[0])], T0)
    await first.close()

    second = await open_store()
    head = await second.current_revision()
    assert (second.cache.floor, second.cache.revision, len(second.cache)) == (head, head, 0)
    # Below the floor only SQL answers, and still answers everything.
    assert second.cache.inbox("b", 0, 500) is None
    box = await second.inbox("b", 0)
    assert [i.migration.id for i in box.items] == [m.id]
    assert box.revision == head
    # A new commit is answered from memory, as SQL would.
    await second.put_interfaces(DOMAINS[0], [Interface(mac=MACS[1])], T0)
    cached = second.cache.inbox("b", head, 500)
    assert cached is not None
    assert cached.model_dump_json() == (await second.inbox_sql("b", head)).model_dump_json()
    assert [r.mac for r in cached.items[0].interfaces] == MACS[:2]
