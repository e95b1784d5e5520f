"""No controller (issue 10): ``virsh migrate --live`` alone carries the port data.

The broker runs with ``--agent-migrations``, both agents with
``--register-migrations``. The test only runs ``virsh`` and reads the broker:
the destination agent registers the migration when libvirt starts the
arriving domain, the source agent uploads because its libvirt shows the
outgoing job, the destination applies, reports the resume and completes.
The guest has a ``type='user'`` NIC first, then OVS NICs: libvirt 9.0's own
carry (by position) leaves those ports empty, so every value seen landing is
vifbroker's. The margin (resume - landing) is printed per NIC and by the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from libvirt_fixtures import GuestFactory
from libvirt_harness import Guest, HarnessError, Host, OvsNic, Testbed, UserNic, mac, migrate
from libvirt_scenarios import Leg, check_landed_before_resume, leg_table
from libvirt_stack import AgentPair, Broker
from libvirt_timing import MigrationTimer

from vifbroker.client import BrokerClient, NotFound, RetryPolicy
from vifbroker.model import Migration, MigrationState, VifStatus

pytestmark = [pytest.mark.libvirt, pytest.mark.timeout(300)]


@pytest.fixture
async def observer(broker: Broker) -> AsyncIterator[BrokerClient]:
    """Reads only (what an operator looks at): the test writes nothing to the broker."""
    retry = RetryPolicy(attempts=20, base_delay=0.05, max_delay=0.5)
    async with BrokerClient(broker.url, broker.controller_token, retry=retry) as client:
        yield client


async def until(what: str, check: object, timeout: float = 60) -> None:
    """Poll the async predicate ``check`` until true (fails after ``timeout`` s)."""
    async with asyncio.timeout(timeout):
        while not await check():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def find(observer: BrokerClient, guest: Guest) -> Migration | None:
    found = [m async for m in observer.iter_migrations(domain_uuid=guest.uuid)]
    return found[0] if found else None


async def running_on(observer: BrokerClient, host: Host, guest: Guest) -> bool:
    return any(h.name == host.name and guest.uuid in h.running_domains
               for h in await observer.list_hosts())  # fmt: skip


async def a_guest_on_a(
    testbed: Testbed, guests: GuestFactory, observer: BrokerClient, base: int
) -> Guest:
    user = UserNic(mac(base))
    nics = [OvsNic(mac(base + 1)), OvsNic(mac(base + 2))]
    guest = guests([user, *nics], testbed.a)
    testbed.a.set_portdata(guest, nics[0].mac, "tenant=blue vni=101")
    testbed.a.set_portdata(guest, nics[1].mac, 'tenant=red {"vni": 202}')
    await until("A reports the guest", lambda: running_on(observer, testbed.a, guest), 30)
    return guest


async def test_virsh_migrate_alone_carries_port_data_before_resume(
    testbed: Testbed,
    agent_pair: AgentPair,
    guests: GuestFactory,
    observer: BrokerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = testbed.a, testbed.b
    agent_pair.start(register=True)
    guest = await a_guest_on_a(testbed, guests, observer, 0xA100)
    sent = {n.mac: p.portdata for n in guest.ovs_nics if (p := a.ovs_port(guest.uuid, n.mac))}
    with MigrationTimer(b) as timer:
        # The 64 MiB diskless test guest (mostly zero pages) copies in ~0.1-0.4 s
        # over loopback, far below any real guest, and the whole chain (register,
        # upload, apply) runs inside that window: unthrottled it landed first by
        # +35, +20 and +9 ms on this 2-core box under load 10-12. 1 MiB/s gives it a
        # copy phase of ~1.5 s, like a small real guest, so machine load does not
        # decide the outcome; the margin is printed either way.
        await asyncio.to_thread(migrate, guest, a, b, extra=("--bandwidth", "1"))
        timings = await asyncio.to_thread(timer.collect, guest)
    leg = Leg("controller-less: virsh migrate --live", guest, a, b,
              {k: v for k, v in sent.items() if v}, timings, [])  # fmt: skip

    async def completed() -> bool:
        m = await find(observer, guest)
        return m is not None and m.state is MigrationState.COMPLETED

    await until("the destination completes it", completed)
    m = await find(observer, guest)
    assert m is not None
    with capsys.disabled():
        print("\n" + leg_table(leg, "no controller"))
        print(f"  broker timeline: {m.timeline.model_dump(mode='json')}")
    assert leg.held == leg.sent  # every OVS port holds its own source value
    check_landed_before_resume(leg)
    assert (m.source_host, m.destination_host, m.registered_by) == (a.name, b.name, b.name)
    status = {v.mac: v.status for v in m.interfaces}
    assert status == {guest.nics[0].mac: VifStatus.SKIPPED,
                      **{n.mac: VifStatus.APPLIED for n in guest.ovs_nics}}  # fmt: skip
    t = m.timeline
    assert t.resumed_at is not None and t.margin_seconds is not None and t.late is False
    assert t.margin_seconds > 0
    assert all(v.uploaded_at and v.applied_at for v in m.interfaces if v.mac in sent)
    records = await observer.get_interfaces(guest.uuid)
    assert all(r.interface is None or r.interface.portdata is None for r in records)  # purged


async def test_an_aborted_migration_ends_cancelled_and_purged(
    testbed: Testbed,
    agent_pair: AgentPair,
    guests: GuestFactory,
    observer: BrokerClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = testbed.a, testbed.b
    agent_pair.start(register=True)
    guest = await a_guest_on_a(testbed, guests, observer, 0xA200)
    # 1 MiB/s stretches the memory copy: time to abort once B has the values.
    moving = asyncio.ensure_future(
        asyncio.to_thread(migrate, guest, a, b, extra=("--bandwidth", "1"))
    )

    async def uploaded() -> bool:
        m = await find(observer, guest)
        return m is not None and {v.mac for v in m.interfaces} == {n.mac for n in guest.nics}

    await until("A uploaded while the memory is copied", uploaded)
    a.virsh("domjobabort", guest.name)
    with pytest.raises(HarnessError, match=r"(?i)cancel|abort"):
        await moving

    async def cancelled() -> bool:
        m = await find(observer, guest)
        return m is not None and m.state is MigrationState.CANCELLED

    await until("the destination cancels it", cancelled)
    records = await observer.get_interfaces(guest.uuid)
    with capsys.disabled():
        print(f"\naborted: broker {MigrationState.CANCELLED}; records {[r.mac for r in records]}")
    assert records and all(r.interface is None or r.interface.portdata is None for r in records)
    assert a.domstate(guest.name) == "running"  # the guest stayed on A with its value
    assert a.ovs_port(guest.uuid, guest.ovs_nics[0].mac).portdata == "tenant=blue vni=101"  # type: ignore[union-attr]


async def test_a_third_host_claiming_a_domain_that_is_not_leaving_gets_nothing(
    testbed: Testbed,
    broker: Broker,
    agent_pair: AgentPair,
    guests: GuestFactory,
    observer: BrokerClient,
) -> None:
    """Host C (its agent's token; no libvirt of its own here) registers an incoming
    migration for a guest that runs on A and is not migrating: A's agent finds no
    outgoing job in its libvirt, uploads nothing and cancels."""
    agent_pair.start(register=True)
    guest = await a_guest_on_a(testbed, guests, observer, 0xA300)
    token = (broker.token_files["C"]).read_text().strip()
    async with BrokerClient(broker.url, token) as c:
        m = await c.create_migration(guest.uuid, None, "C", id=f"c-{guest.uuid[:8]}")
        assert m.source_host == testbed.a.name and m.registered_by == "C"

        async def cancelled() -> bool:
            found = await find(observer, guest)
            return found is not None and found.state is MigrationState.CANCELLED

        await until("A refuses and cancels", cancelled)
        inbox = await c.inbox("C", 0)
        mine = [i for i in inbox.items if i.migration.id == m.id]
        assert mine and all(i.interfaces == [] for i in mine)  # no port data, ever
    with pytest.raises(NotFound):
        await observer.get_interfaces(guest.uuid)
    assert "refusing to upload" in agent_pair.log(testbed.a.name)
    assert testbed.a.domstate(guest.name) == "running"
