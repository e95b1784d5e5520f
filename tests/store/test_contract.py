"""The Store contract: every implementation must pass this suite unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from vifbroker.model import (
    HostIn,
    Interface,
    MigrationCreate,
    MigrationState,
    ResultIn,
    VifStatus,
    portdata_digest,
)
from vifbroker.model.migration import BackendInfo
from vifbroker.model.wire import migration_json, page_of
from vifbroker.store import (
    Conflict,
    InvalidInput,
    InvalidTransition,
    NoActiveMigration,
    NotFound,
    PreconditionFailed,
    Store,
    WrongHost,
)
from vifbroker.store.errors import TooManyVifs

DOM = "6f1a3c2e-0000-4000-8000-000000000001"
DOM2 = "6f1a3c2e-0000-4000-8000-000000000002"
StoreFactory = Callable[[], Awaitable[Store]]
MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def req(domain: str = DOM, **kw: object) -> MigrationCreate:
    base: dict[str, object] = {
        "domain_uuid": domain,
        "source_host": "a",
        "destination_host": "b",
    }
    return MigrationCreate.model_validate(base | kw)


def iface(mac: str, portdata: str | None = "pd") -> Interface:
    return Interface.model_validate(
        {
            "mac": mac,
            "type": "bridge",
            "source": {"bridge": "br-int"},
            "virtualport": {"type": "openvswitch", "portdata": portdata},
        }
    )


def ok(mac: str, gen: int, pd: str | None = "pd") -> ResultIn:
    return ResultIn(mac=mac, generation=gen, status="applied", digest=portdata_digest(pd))


async def test_create_is_idempotent_by_id_and_one_active_per_domain(store: Store) -> None:
    m, created = await store.create_migration(req(id="m1", domain_name="vm"), T0)
    assert created and m.id == "m1" and m.state is MigrationState.PENDING
    assert m.expires_at == T0 + timedelta(seconds=3600)
    again, created = await store.create_migration(req(id="m1", domain_name="vm"), T0)
    assert not created and again == m
    with pytest.raises(Conflict):
        await store.create_migration(req(id="m1", domain_name="other"), T0)
    with pytest.raises(Conflict):
        await store.create_migration(req(id="m2"), T0)
    other, created = await store.create_migration(req(DOM2), T0)
    assert created and other.id != "m1" and other.revision > m.revision


async def test_revision_strictly_increases_with_every_change(store: Store) -> None:
    r0 = await store.current_revision()
    m, _ = await store.create_migration(req(), T0)
    up = await store.put_interfaces(DOM, [iface(MAC1)], T0)
    m2 = await store.post_results(m.id, [ok(MAC1, 1)], T0)
    m3 = await store.transition(m.id, MigrationState.COMPLETED, T0)
    revs = [r0, m.revision, up.revision, m2.revision, m3.revision]
    assert revs == sorted(set(revs)), revs
    assert await store.current_revision() == m3.revision


async def test_upload_generations_and_if_match(store: Store) -> None:
    with pytest.raises(NoActiveMigration):
        await store.put_interfaces(DOM, [iface(MAC1)], T0)
    await store.create_migration(req(), T0)
    up = await store.put_interfaces(DOM, [iface(MAC1, "one"), iface(MAC2, "x")], T0)
    assert up.generations == [(MAC1, 1), (MAC2, 1)]
    assert up.state is MigrationState.UPLOADED
    assert up.revision == (await store.get_migration(up.migration_id)).revision
    assert {r.revision for r in await store.get_interfaces(DOM)} == {up.revision}
    up = await store.put_interfaces(DOM, [iface(MAC1, "two")], T0, if_match={MAC1: 1})
    assert up.generations == [(MAC1, 2)]
    (rec,) = await store.get_interfaces(DOM, MAC1)
    assert rec.generation == 2 and rec.revision == up.revision and rec.interface is not None
    assert rec.interface.portdata == "two"
    with pytest.raises(PreconditionFailed) as err:
        await store.put_interfaces(DOM, [iface(MAC1, "three")], T0, if_match={MAC1: 1})
    assert err.value.current_generation == 2
    with pytest.raises(PreconditionFailed):
        await store.put_interfaces(DOM, [iface(MAC2)], T0, if_match={MAC2: 0})
    with pytest.raises(InvalidInput):
        await store.put_interfaces(DOM, [iface(MAC1), iface(MAC1)], T0)
    got = await store.get_interfaces(DOM)
    assert [(r.mac, r.generation) for r in got] == [(MAC1, 2), (MAC2, 1)]
    assert got[0].interface is not None and got[0].interface.portdata == "two"


async def test_upload_checks_the_source_host_in_the_same_write(store: Store) -> None:
    await store.create_migration(req(), T0)
    with pytest.raises(WrongHost):
        await store.put_interfaces(DOM, [iface(MAC1)], T0, source_host="b")
    with pytest.raises(NotFound):
        await store.get_interfaces(DOM)
    up = await store.put_interfaces(DOM, [iface(MAC1)], T0, source_host="a")
    assert up.generations == [(MAC1, 1)]


async def test_bulk_upload_is_all_or_nothing(store: Store) -> None:
    await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1, "v1")], T0)
    with pytest.raises(PreconditionFailed):
        await store.put_interfaces(
            DOM, [iface(MAC1, "v2"), iface(MAC2, "new")], T0, if_match={MAC1: 7}
        )
    got = await store.get_interfaces(DOM)
    assert [(r.mac, r.generation) for r in got] == [(MAC1, 1)]


async def test_state_machine_applied_and_back_to_uploaded(store: Store) -> None:
    m, _ = await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1), iface(MAC2)], T0)
    m = await store.post_results(m.id, [ok(MAC1, 1)], T0)
    assert m.state is MigrationState.UPLOADED
    m = await store.post_results(
        m.id, [ResultIn(mac=MAC2, generation=1, status="skipped", detail="no ovs")], T0
    )
    assert m.state is MigrationState.APPLIED
    assert {v.mac: v.status for v in m.interfaces} == {
        MAC1: VifStatus.APPLIED,
        MAC2: VifStatus.SKIPPED,
    }
    # A new generation moves applied back to uploaded; a late result for the
    # old generation does not mark it applied.
    await store.put_interfaces(DOM, [iface(MAC1, "newer")], T0)
    m = await store.get_migration(m.id)
    assert m.state is MigrationState.UPLOADED
    m = await store.post_results(m.id, [ok(MAC1, 1)], T0)
    assert m.state is MigrationState.UPLOADED
    with pytest.raises(InvalidInput):
        await store.post_results(m.id, [ok(MAC1, 3, "newer")], T0)
    with pytest.raises(InvalidInput):
        await store.post_results(m.id, [ok("52:54:00:00:00:09", 1)], T0)
    m = await store.post_results(m.id, [ok(MAC1, 2, "newer")], T0)
    assert m.state is MigrationState.APPLIED


async def test_failed_result_and_digest_mismatch(store: Store) -> None:
    m, _ = await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1, "exact")], T0)
    m = await store.post_results(m.id, [ok(MAC1, 1, "not what was sent")], T0)
    assert m.state is MigrationState.FAILED
    assert m.interfaces[0].status is VifStatus.FAILED
    assert "digest" in (m.interfaces[0].detail or "")
    # A retry with a new generation recovers.
    await store.put_interfaces(DOM, [iface(MAC1, "exact")], T0)
    m = await store.post_results(m.id, [ok(MAC1, 2, "exact")], T0)
    assert m.state is MigrationState.APPLIED


async def test_skipped_is_failure_under_fail_policy(store: Store) -> None:
    m, _ = await store.create_migration(req(on_backend_mismatch="fail"), T0)
    await store.put_interfaces(DOM, [iface(MAC1)], T0)
    skipped = ResultIn(mac=MAC1, generation=1, status="skipped", detail="no OVS here")
    m = await store.post_results(m.id, [skipped], T0)
    assert m.state is MigrationState.FAILED
    assert m.interfaces[0].status is VifStatus.FAILED
    assert m.interfaces[0].detail == "no OVS here"  # the agent's reason is kept


async def test_skipped_counts_as_done_under_skip_policy(store: Store) -> None:
    m, _ = await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1)], T0)
    skipped = ResultIn(mac=MAC1, generation=1, status="skipped", detail="no OVS here")
    m = await store.post_results(m.id, [skipped], T0)
    assert m.state is MigrationState.APPLIED
    assert m.interfaces[0].status is VifStatus.SKIPPED


async def test_terminal_transitions_purge_port_data(store: Store) -> None:
    m, _ = await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1, "secret")], T0)
    await store.post_results(m.id, [ok(MAC1, 1, "secret")], T0)
    done = await store.transition(m.id, MigrationState.COMPLETED, T0)
    assert done.state is MigrationState.COMPLETED
    assert done.interfaces[0].status is VifStatus.APPLIED  # outcome kept for audit
    again = await store.transition(m.id, MigrationState.COMPLETED, T0)
    assert again.revision == done.revision
    with pytest.raises(InvalidTransition):
        await store.transition(m.id, MigrationState.CANCELLED, T0)
    with pytest.raises(NoActiveMigration):
        await store.active_migration(DOM)
    with pytest.raises(NoActiveMigration):
        await store.active_parties(DOM)
    recs = await store.get_interfaces(DOM)
    assert recs[0].interface is not None and recs[0].interface.portdata is None
    with pytest.raises(Conflict):
        await store.post_results(m.id, [ok(MAC1, 1, "secret")], T0)
    assert (await store.latest_migration(DOM)).id == m.id
    # The domain can migrate again; the new migration is now the latest.
    m2, created = await store.create_migration(req(), T0)
    assert created and m2.id != m.id
    assert (await store.latest_migration(DOM)).id == m2.id
    with pytest.raises(NotFound):
        await store.latest_migration(DOM2)
    with pytest.raises(NotFound):
        await store.transition("nope", MigrationState.CANCELLED, T0)


async def test_expiry_and_prune(store: Store) -> None:
    short, _ = await store.create_migration(req(ttl_seconds=10), T0)
    long, _ = await store.create_migration(req(DOM2, ttl_seconds=1000), T0)
    await store.put_interfaces(DOM, [iface(MAC1, "gone soon")], T0)
    assert await store.expire(T0 + timedelta(seconds=5)) == []
    assert await store.expire(T0 + timedelta(seconds=11)) == [short.id]
    m = await store.get_migration(short.id)
    assert m.state is MigrationState.EXPIRED
    recs = await store.get_interfaces(DOM)
    assert recs[0].interface is not None and recs[0].interface.portdata is None
    assert (await store.get_migration(long.id)).state is MigrationState.PENDING
    assert await store.prune(T0 + timedelta(seconds=12)) == 1
    with pytest.raises(NotFound):
        await store.get_migration(short.id)
    counts = await store.count_by_state()
    assert counts == {MigrationState.PENDING: 1}


async def test_list_filters_and_cursor(store: Store) -> None:
    ids = []
    for n in range(5):
        dom = f"6f1a3c2e-0000-4000-8000-00000000010{n}"
        m, _ = await store.create_migration(
            req(dom, source_host=f"h{n % 2}", destination_host="z"), T0
        )
        ids.append(m.id)
    newest_first = ids[::-1]
    page, cursor = await store.list_migrations(limit=2)
    assert [m.id for m in page] == newest_first[:2] and cursor
    page2, cursor2 = await store.list_migrations(limit=2, cursor=cursor)
    page3, cursor3 = await store.list_migrations(limit=2, cursor=cursor2)
    assert [m.id for m in page2 + page3] == newest_first[2:] and cursor3 is None
    by_host, _ = await store.list_migrations(host="h1")
    assert [m.id for m in by_host] == [ids[3], ids[1]]
    by_dom, _ = await store.list_migrations(domain_uuid="6f1a3c2e-0000-4000-8000-000000000104")
    assert [m.id for m in by_dom] == [ids[4]]
    pending, _ = await store.list_migrations(state=MigrationState.PENDING)
    assert len(pending) == 5
    with pytest.raises(InvalidInput):
        await store.list_migrations(cursor="junk")


async def test_inbox_directions_and_resume(store: Store) -> None:
    m, _ = await store.create_migration(req(), T0)
    box_a = await store.inbox("a", 0)
    box_b = await store.inbox("b", 0)
    assert [i.direction for i in box_a.items] == ["outgoing"]
    assert [i.direction for i in box_b.items] == ["incoming"]
    assert (await store.inbox("c", 0)).items == []
    await store.put_interfaces(DOM, [iface(MAC1, "x")], T0)
    box_b2 = await store.inbox("b", box_b.revision)
    assert len(box_b2.items) == 1
    item = box_b2.items[0]
    assert item.migration.id == m.id and item.interfaces[0].interface is not None
    assert item.interfaces[0].interface.portdata == "x"
    assert (await store.inbox("b", box_b2.revision)).items == []


async def test_inbox_page_is_the_inbox_in_wire_form(store: Store) -> None:
    """What the inbox route answers: the same items as ``inbox``, as the same bytes,
    through every kind of change (rendered text kept across them must follow)."""
    m, _ = await store.create_migration(req(), T0)
    await store.create_migration(req(DOM2, source_host="b"), T0)  # b on both sides
    steps = [
        store.put_interfaces(DOM, [iface(MAC1, "x"), iface(MAC2, None)], T0),
        store.post_results(m.id, [ResultIn(mac=MAC1, generation=1, status="skipped")], T0),
        store.put_interfaces(DOM, [iface(MAC1, "y ünï <&>")], T0),
        store.transition(m.id, MigrationState.COMPLETED, T0),
    ]
    for step in [None, *steps]:
        if step is not None:
            await step
        for host in ("a", "b", "c"):
            for after in (0, 1, await store.current_revision()):
                for limit in (1, 500):
                    page = await store.inbox_page(host, after, limit)
                    box = await store.inbox(host, after, limit)
                    assert page.json() == page_of(box).json(), (host, after, limit)
                    assert len(page.items) == len(box.items)


async def test_inbox_resume_loses_nothing_under_concurrent_writes(store: Store) -> None:
    """A reader passing back the last revision sees every change once, in order."""
    domains = [f"6f1a3c2e-0000-4000-8000-{n:012d}" for n in range(20)]
    for d in domains:
        await store.create_migration(req(d), T0)
    seen: list[tuple[int, str]] = []
    after = await store.current_revision()
    stop = asyncio.Event()

    async def reader() -> None:
        nonlocal after
        while True:
            box = await store.inbox("b", after, limit=7)
            for item in box.items:
                seen.append((item.revision, item.migration.domain_uuid))
            if box.revision == after and stop.is_set():
                return
            after = box.revision
            if not box.items:
                await store.hub.wait(["host:b"], 0.05)

    async def writer(d: str) -> None:
        for gen in range(3):
            await store.put_interfaces(d, [iface(MAC1, f"{d}-{gen}")], T0)

    task = asyncio.create_task(reader())
    await asyncio.gather(*(writer(d) for d in domains))
    stop.set()
    await asyncio.wait_for(task, 10)
    revs = [r for r, _ in seen]
    assert revs == sorted(revs) and len(revs) == len(set(revs))
    # Every domain's final generation was delivered.
    final = {d for r, d in seen}
    assert final == set(domains)
    for d in domains:
        recs = await store.get_interfaces(d)
        assert recs[0].generation == 3


async def test_hub_wakes_only_after_commit(store: Store) -> None:
    await store.create_migration(req(), T0)
    waiter = asyncio.create_task(store.hub.wait(["host:b"], 10))
    other = asyncio.create_task(store.hub.wait(["host:zzz"], 0.2))
    await asyncio.sleep(0)
    up = await store.put_interfaces(DOM, [iface(MAC1)], T0)
    assert await asyncio.wait_for(waiter, 5) is True
    # The change is readable by the time the waiter wakes.
    box = await store.inbox("b", up.revision - 1)
    assert box.items and box.items[0].interfaces[0].generation == 1
    assert await other is False


async def test_events_in_revision_order(store: Store) -> None:
    m1, _ = await store.create_migration(req(), T0)
    m2, _ = await store.create_migration(req(DOM2), T0)
    await store.put_interfaces(DOM, [iface(MAC1)], T0)
    events = await store.events(0)
    assert [e.id for e in events] == [m2.id, m1.id]
    assert events[1].revision > events[0].revision
    assert [e.id for e in await store.events(events[0].revision)] == [m1.id]
    # In wire form: each migration's revision and JSON text, the same migrations.
    for after in (0, events[0].revision, events[1].revision):
        expected = [(e.revision, migration_json(e)) for e in await store.events(after)]
        assert await store.events_page(after) == expected
    assert await store.events_page(0, limit=1) == [(m2.revision, migration_json(events[0]))]


async def test_hosts_heartbeat(store: Store) -> None:
    info = HostIn(agent_version="1.0", backends=[BackendInfo(name="openvswitch")])
    h = await store.heartbeat("a", info, T0)
    assert h.name == "a" and h.last_seen == T0 and h.backends[0].name == "openvswitch"
    h2 = await store.heartbeat("a", HostIn(agent_version="1.1"), T0 + timedelta(seconds=5))
    assert h2.agent_version == "1.1" and h2.backends == []
    await store.heartbeat("b", HostIn(), T0)
    assert [h.name for h in await store.list_hosts()] == ["a", "b"]
    assert (await store.get_host("a")).agent_version == "1.1"
    with pytest.raises(NotFound):
        await store.get_host("c")


@pytest.mark.parametrize(
    "portdata",
    ["", 'quo"te', "new\nline\r\n", "--", "a=b", "{}", "é ü ß", "🚀✨", "x" * 60 * 1024],
)
async def test_port_data_round_trips_byte_exactly(store: Store, portdata: str) -> None:
    await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1, portdata)], T0)
    recs = await store.get_interfaces(DOM, MAC1)
    assert recs[0].interface is not None and recs[0].interface.portdata == portdata


async def test_reopened_store_keeps_everything_acknowledged(store_factory: StoreFactory) -> None:
    first = await store_factory()
    m, _ = await first.create_migration(req(id="keep"), T0)
    await asyncio.gather(
        *(
            first.put_interfaces(DOM, [iface(f"52:54:00:00:01:{n:02x}", str(n))], T0)
            for n in range(30)
        )
    )
    rev = await first.current_revision()
    await first.close()
    second = await store_factory()
    assert await second.current_revision() == rev
    assert second.hub.revision == rev
    recs = await second.get_interfaces(DOM)
    assert len(recs) == 30
    assert {r.interface.portdata for r in recs if r.interface} == {str(n) for n in range(30)}
    m2, created = await second.create_migration(req(DOM2), T0)
    assert created and m2.revision > rev and (await second.get_migration("keep")).id == m.id


# ------------------------------------------------------- timeline, registration


async def test_timeline_uploaded_applied_resumed(store: Store) -> None:
    m, _ = await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1), iface(MAC2)], T0)
    landed = T0 + timedelta(seconds=1)
    m = await store.post_results(
        m.id,
        [ok(MAC1, 1).model_copy(update={"applied_at": landed}),
         ok(MAC2, 1).model_copy(update={"applied_at": landed + timedelta(seconds=1)})],
        T0 + timedelta(seconds=3),
    )  # fmt: skip
    assert [v.uploaded_at for v in m.interfaces] == [T0, T0]
    assert m.timeline.resumed_at is None and m.timeline.margin_seconds is None
    assert m.timeline.last_applied_at == landed + timedelta(seconds=1)
    resumed = T0 + timedelta(seconds=2.5)
    m = await store.record_resume(m.id, resumed, T0 + timedelta(seconds=4))
    assert m.timeline.resumed_at == resumed
    assert m.timeline.margin_seconds == pytest.approx(0.5)
    assert m.timeline.late is False
    # A second report changes nothing; a re-apply keeps the first landing.
    again = await store.record_resume(m.id, T0 + timedelta(seconds=9), T0 + timedelta(seconds=9))
    assert again.timeline == m.timeline and again.revision == m.revision
    m = await store.post_results(m.id, [ok(MAC1, 1)], T0 + timedelta(seconds=10))
    assert m.interfaces[0].applied_at == landed


async def test_a_vif_landing_after_the_resume_is_late(store: Store) -> None:
    m, _ = await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1)], T0)
    m = await store.record_resume(m.id, T0 + timedelta(seconds=1), T0 + timedelta(seconds=1))
    assert m.timeline.late is True and m.timeline.margin_seconds is None  # nothing landed
    m = await store.post_results(m.id, [ok(MAC1, 1)], T0 + timedelta(seconds=2))
    assert m.timeline.late is True
    assert m.timeline.margin_seconds == pytest.approx(-1.0)


async def test_registered_by_and_the_running_host(store: Store) -> None:
    await store.heartbeat("a", HostIn(running_domains=[DOM.upper()]), T0)
    await store.heartbeat("c", HostIn(running_domains=[DOM2]), T0)
    assert [h.name for h in await store.running_hosts(DOM)] == ["a"]
    assert [h.name for h in await store.running_hosts(DOM2)] == ["c"]
    assert await store.running_hosts("6f1a3c2e-0000-4000-8000-00000000ffff") == []
    # Mid-migration both ends report it (the arriving domain exists, paused): newest first.
    await store.heartbeat("b", HostIn(running_domains=[DOM]), T0 + timedelta(seconds=5))
    found = await store.running_hosts(DOM)
    assert [(h.name, h.last_seen) for h in found] == [
        ("b", T0 + timedelta(seconds=5)),
        ("a", T0),
    ]
    assert (await store.get_host("b")).running_domains == [DOM]
    m, _ = await store.create_migration(req(), T0, registered_by="b")
    assert m.registered_by == "b"
    assert (await store.get_migration(m.id)).registered_by == "b"
    m2, _ = await store.create_migration(req(DOM2), T0)
    assert m2.registered_by is None


async def test_max_vifs_bounds_the_migration_and_writes_nothing_past_it(store: Store) -> None:
    await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1, "x")], T0, max_vifs=2)
    # Re-uploading a vif it holds does not count twice.
    await store.put_interfaces(DOM, [iface(MAC1, "y"), iface(MAC2, "z")], T0, max_vifs=2)
    third = iface("52:54:00:00:00:03", "w")
    with pytest.raises(TooManyVifs):
        await store.put_interfaces(DOM, [iface(MAC1, "v"), third], T0, max_vifs=2)
    records = await store.get_interfaces(DOM)
    assert [(r.mac, r.generation) for r in records] == [(MAC1, 2), (MAC2, 1)]


async def test_active_parties_names_the_hosts_of_the_active_migration(store: Store) -> None:
    with pytest.raises(NoActiveMigration):
        await store.active_parties(DOM)
    m, _ = await store.create_migration(req(), T0)
    await store.put_interfaces(DOM, [iface(MAC1), iface(MAC2)], T0)
    parties = await store.active_parties(DOM)
    assert (parties.migration_id, parties.source_host, parties.destination_host) == (
        m.id,
        m.source_host,
        m.destination_host,
    )
    assert parties.registered_by == m.registered_by
    # Asked again after the migration ended (and a new one began): never a stale answer.
    await store.transition(m.id, MigrationState.CANCELLED, T0)
    with pytest.raises(NoActiveMigration):
        await store.active_parties(DOM)
    again, _ = await store.create_migration(req(id="m-again"), T0)
    assert (await store.active_parties(DOM)).migration_id == again.id


async def test_uploads_sharing_a_commit_each_count(store: Store) -> None:
    """Uploads queued together (one group commit) land as if made one by one."""
    m, _ = await store.create_migration(req(), T0)
    outcomes = await asyncio.gather(
        *(store.put_interfaces(DOM, [iface(MAC1, f"v{n}")], T0) for n in range(5)),
        store.put_interfaces(DOM, [iface(MAC2, "x")], T0, if_match={MAC2: 3}),
        store.put_interfaces(DOM2, [iface(MAC1)], T0),
        store.put_interfaces(DOM, [iface(MAC2, "y")], T0),
        return_exceptions=True,
    )
    uploads = [o for o in outcomes[:5] if not isinstance(o, BaseException)]
    assert sorted(u.generations[0][1] for u in uploads) == [1, 2, 3, 4, 5]
    revisions = [u.revision for u in sorted(uploads, key=lambda u: u.generations[0][1])]
    assert revisions == sorted(set(revisions))
    assert isinstance(outcomes[5], PreconditionFailed)
    assert isinstance(outcomes[6], NoActiveMigration)
    last = outcomes[7]
    assert not isinstance(last, BaseException) and last.generations == [(MAC2, 1)]
    got = {r.mac: r for r in await store.get_interfaces(DOM)}
    assert {mac: r.generation for mac, r in got.items()} == {MAC1: 5, MAC2: 1}
    # The upload that got generation 5 sent "v<n>" (n: its place in the gather).
    newest = next(
        n for n, u in enumerate(outcomes[:5]) if u in uploads and u.generations == [(MAC1, 5)]
    )
    assert got[MAC1].interface is not None
    assert got[MAC1].interface.portdata == f"v{newest}"
    done = await store.post_results(m.id, [ok(MAC1, 5, f"v{newest}"), ok(MAC2, 1, "y")], T0)
    assert done.state is MigrationState.APPLIED
