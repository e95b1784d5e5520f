"""Two hosts, one broker, two agents: port data travels from A's OVSDB to B's."""

from __future__ import annotations

import uuid

import pytest
from agent_harness import BrokerProcess, Host, Vif, mac

from testkit import wait_until
from vifbroker.backends.openvswitch import OpenVSwitchBackend
from vifbroker.client import BrokerClient
from vifbroker.model import MigrationState, VifStatus, portdata_digest

pytestmark = pytest.mark.ovs

HOSTILE_VALUES = [
    'say "hi"',
    "back\\slash\\\\n",
    "line1\nline2\n",
    "tab\there",
    "-- set Interface x external_ids:evil=1",
    "a=b,c=d",
    "{}",
    '{"k": [1, 2, {"x": null}]}',
    "non-ASCII: Grüße, Ωmega, 日本語",
    "emoji 🚀🔥",
    "",
    "x" * (60 * 1024),
]


async def migrate(
    controller: BrokerClient, dom: str, a: Host, b: Host, *, mismatch: str | None = None
) -> str:
    m = await controller.create_migration(
        dom,
        a.name,
        b.name,
        on_backend_mismatch=mismatch,  # type: ignore[arg-type]
    )
    return m.id


def start_with_driver(host: Host, broker: BrokerProcess, driver: str) -> None:
    """Start ``host``'s agent with its openvswitch backend on ``driver``."""
    backend = OpenVSwitchBackend(db=host.ovs.db, no_wait=True, driver=driver)
    host.start_agent(broker, backend_objs=[backend])


@pytest.mark.parametrize("driver", ["vsctl", "native"])
async def test_hostile_portdata_arrives_byte_exact_on_renamed_port(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host], driver: str
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    vifs = [Vif(mac(i), f"vnet{i}", v) for i, v in enumerate(HOSTILE_VALUES)]
    a.define(dom, vifs)
    for v in vifs:
        b.plug(dom, Vif(v.mac, f"tap-b{v.tap[4:]}"))
    start_with_driver(a, broker_proc, driver)
    start_with_driver(b, broker_proc, driver)

    mid = await migrate(controller, dom, a, b)
    done = await controller.wait_applied(mid, 60)

    assert done.state == MigrationState.APPLIED
    assert {v.mac for v in done.interfaces} == {v.mac for v in vifs}
    records = {r.mac: r for r in await controller.get_interfaces(dom)}
    for v in vifs:
        assert b.portdata(f"tap-b{v.tap[4:]}") == v.portdata, v.mac
        rec = records[v.mac]
        assert rec.result.status == VifStatus.APPLIED
        assert rec.result.applied_generation == rec.generation == 1
        assert rec.result.digest == portdata_digest(v.portdata)


async def test_source_change_after_upload_arrives_as_generation_2(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    vifs = [Vif(mac(1), "vnet1", "first"), Vif(mac(2), "vnet2", "other")]
    a.define(dom, vifs)
    b.plug(dom, Vif(mac(1), "tap7"))
    b.plug(dom, Vif(mac(2), "tap8"))
    a.start_agent(broker_proc)
    b.start_agent(broker_proc)
    mid = await migrate(controller, dom, a, b)
    assert (await controller.wait_applied(mid, 60)).state == MigrationState.APPLIED
    assert b.portdata("tap7") == "first"

    a.ovs.set_portdata("vnet1", 'second "value"\n')

    async def gen2_applied() -> bool:
        rec = await controller.get_interface(dom, mac(1))
        return rec.generation == 2 and rec.result.applied_generation == 2

    await wait_until(gen2_applied, timeout=30)
    assert b.portdata("tap7") == 'second "value"\n'
    untouched = await controller.get_interface(dom, mac(2))
    assert untouched.generation == 1
    assert b.portdata("tap8") == "other"
    assert (await controller.get_migration(mid)).state == MigrationState.APPLIED


async def test_destination_port_created_after_upload_still_gets_it(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    vif = Vif(mac(3), "vnet3", "late port")
    a.define(dom, [vif])
    a.start_agent(broker_proc)
    b.start_agent(broker_proc)
    mid = await migrate(controller, dom, a, b)

    async def uploaded() -> bool:
        return (await controller.get_migration(mid)).state == MigrationState.UPLOADED

    await wait_until(uploaded, timeout=30)
    rec = await controller.get_interface(dom, vif.mac)
    assert rec.result.status == VifStatus.PENDING

    b.plug(dom, Vif(vif.mac, "vnet42"))
    assert (await controller.wait_applied(mid, 60)).state == MigrationState.APPLIED
    assert b.portdata("vnet42") == "late port"


@pytest.mark.parametrize(
    ("policy", "expected", "state"),
    [("skip", VifStatus.SKIPPED, MigrationState.APPLIED),
     ("fail", VifStatus.FAILED, MigrationState.FAILED)],
)  # fmt: skip
async def test_destination_without_ovs_reports_mismatch(
    broker_proc: BrokerProcess,
    controller: BrokerClient,
    hosts: tuple[Host, Host],
    policy: str,
    expected: VifStatus,
    state: MigrationState,
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    a.define(dom, [Vif(mac(4), "vnet4", "needs ovs")])
    a.start_agent(broker_proc)
    b.start_agent(broker_proc, backends=["noop"])
    mid = await migrate(controller, dom, a, b, mismatch=policy)

    done = await controller.wait_applied(mid, 60)

    assert done.state == state
    rec = await controller.get_interface(dom, mac(4))
    assert rec.result.status == expected
    assert rec.result.detail is not None and "openvswitch" in rec.result.detail


async def test_non_ovs_interface_is_skipped_while_ovs_ones_apply(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    ovs = Vif(mac(5), "vnet5", "ovs data")
    macvtap = Vif(mac(6), "macvtap0", None, virtualport=None, type="direct")
    a.define(dom, [ovs, macvtap])
    b.plug(dom, Vif(ovs.mac, "vnet9"))
    a.start_agent(broker_proc)
    b.start_agent(broker_proc)
    mid = await migrate(controller, dom, a, b)

    done = await controller.wait_applied(mid, 60)

    assert done.state == MigrationState.APPLIED
    status = {v.mac: v.status for v in done.interfaces}
    assert status == {ovs.mac: VifStatus.APPLIED, macvtap.mac: VifStatus.SKIPPED}
    assert b.portdata("vnet9") == "ovs data"


async def test_agents_heartbeat_their_backends(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    a.start_agent(broker_proc)
    b.start_agent(broker_proc, backends=["noop"])

    async def both_registered() -> bool:
        return {h.name for h in await controller.list_hosts()} >= {"host-a", "host-b"}

    await wait_until(both_registered, timeout=30)
    listed = {h.name: h for h in await controller.list_hosts()}
    assert [(x.name, x.available) for x in listed["host-a"].backends] == [("openvswitch", True)]
    assert "openvswitch" in listed["host-a"].backends[0].virtualport_types
    assert [x.name for x in listed["host-b"].backends] == ["noop"]


async def test_port_that_never_appears_is_reported_failed_before_expiry(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    a.define(dom, [Vif(mac(7), "vnet7", "never lands")])
    a.start_agent(broker_proc)
    b.start_agent(broker_proc)
    m = await controller.create_migration(dom, a.name, b.name, ttl_seconds=3)

    done = await controller.wait_applied(m.id, 30)

    assert done.state == MigrationState.FAILED
    rec = await controller.get_interface(dom, mac(7))
    assert rec.result.status == VifStatus.FAILED
    assert rec.result.detail is not None
    assert "deadline" in rec.result.detail and "no local port" in rec.result.detail
