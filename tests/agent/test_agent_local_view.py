"""The destination agent's own view: its domain XML, its port watch, lifecycle events.

Real broker, real ovsdb-servers; the destination's domain XML comes from its
directory source (what ``virsh dumpxml`` / libvirt-python print on a real host,
covered in tests/libvirt). Lifecycle events come through the agent's
DomainFeed seam, fed by the test.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from agent_harness import BrokerProcess, Host, QueueFeed, Vif, mac

from testkit import wait_until
from vifbroker.agent.lifecycle import DomainEvent
from vifbroker.backends import PortEvent
from vifbroker.backends.openvswitch import OpenVSwitchBackend
from vifbroker.client import BrokerClient
from vifbroker.model import MigrationState, VifStatus

pytestmark = pytest.mark.ovs


@pytest.mark.parametrize(
    ("policy", "state", "status"),
    [
        ("skip", MigrationState.APPLIED, VifStatus.SKIPPED),
        ("fail", MigrationState.FAILED, VifStatus.FAILED),
    ],
)
async def test_destination_nic_that_is_not_ovs_is_decided_at_once(
    broker_proc: BrokerProcess,
    controller: BrokerClient,
    hosts: tuple[Host, Host],
    policy: str,
    state: MigrationState,
    status: VifStatus,
) -> None:
    """The source's NIC is Open vSwitch, the destination's NIC with that MAC is
    macvtap: decided as soon as the destination domain is there, long before
    the migration's deadline (the barrier is asked for far less than the TTL)."""
    a, b = hosts
    dom = str(uuid.uuid4())
    a.define(dom, [Vif(mac(60), "vnet0", "ovs on the source")])
    b.define(dom, [Vif(mac(60), "macvtap0", None, virtualport=None, type="direct")], plug=False)
    a.start_agent(broker_proc)
    b.start_agent(broker_proc)
    m = await controller.create_migration(
        dom,
        a.name,
        b.name,
        ttl_seconds=600,
        on_backend_mismatch=policy,  # type: ignore[arg-type]
    )

    done = await controller.wait_applied(m.id, 20)

    assert done.state == state
    rec = await controller.get_interface(dom, mac(60))
    assert rec.result.status == status
    assert rec.result.detail is not None and "type=direct" in rec.result.detail


async def test_overwritten_port_is_reapplied_and_reported(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    """Something else (libvirt's Finish phase, on a real host) writes other port
    data on an applied port while the migration is active: the agent puts the
    latest generation back and says so in the vif's result."""
    a, b = hosts
    dom = str(uuid.uuid4())
    a.define(dom, [Vif(mac(61), "vnet0", "the broker's value")])
    b.plug(dom, Vif(mac(61), "tap61"))
    a.start_agent(broker_proc)
    b.start_agent(broker_proc)
    m = await controller.create_migration(dom, a.name, b.name)
    assert (await controller.wait_applied(m.id, 30)).state == MigrationState.APPLIED

    b.ovs.set_portdata("tap61", "stale value from a position-based carry")

    async def reapplied() -> bool:
        rec = await controller.get_interface(dom, mac(61))
        return b.portdata("tap61") == "the broker's value" and "re-applied" in (
            rec.result.detail or ""
        )

    await wait_until(reapplied, timeout=20)
    rec = await controller.get_interface(dom, mac(61))
    assert rec.result.status == VifStatus.APPLIED and rec.generation == 1
    assert "after an event on port tap61" in (rec.result.detail or "")


class _Blind(OpenVSwitchBackend):
    """Open vSwitch without a port feed: only a lifecycle event can start a check."""

    async def watch(self) -> AsyncIterator[PortEvent]:
        return
        yield  # pragma: no cover


async def test_resume_event_triggers_verification(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    a.define(dom, [Vif(mac(62), "vnet0", "latest")])
    b.plug(dom, Vif(mac(62), "tap62"))
    feed = QueueFeed()
    a.start_agent(broker_proc)
    b.start_agent(broker_proc, backend_objs=[_Blind(db=b.ovs.db, no_wait=True)], feed=feed)
    m = await controller.create_migration(dom, a.name, b.name)
    assert (await controller.wait_applied(m.id, 30)).state == MigrationState.APPLIED

    b.ovs.set_portdata("tap62", "overwritten before the resume")
    # An event of another domain changes nothing; this domain's resume does.
    await feed.queue.put(DomainEvent(str(uuid.uuid4()), "resumed", "migrated"))
    await feed.queue.put(DomainEvent(dom, "resumed", "migrated"))

    async def reapplied() -> bool:
        return b.portdata("tap62") == "latest"

    await wait_until(reapplied, timeout=20)

    # The agent writes OVSDB first and posts the result after: wait for the post.
    async def reported() -> bool:
        rec = await controller.get_interface(dom, mac(62))
        return "after the guest resumed (migrated)" in (rec.result.detail or "")

    await wait_until(reported, timeout=20)
    rec = await controller.get_interface(dom, mac(62))
    assert rec.result.status == VifStatus.APPLIED


async def test_resume_before_anything_was_applied_is_checked_once_applied(
    broker_proc: BrokerProcess,
    controller: BrokerClient,
    hosts: tuple[Host, Host],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The guest resumes here while the worker has nothing applied yet (the source's
    upload is late): the post-resume check runs once the apply has landed, which is
    when it matters most, instead of the resume being taken and dropped."""
    caplog.set_level(logging.INFO, logger="vifbroker.agent")
    a, b = hosts
    dom = str(uuid.uuid4())
    a.define(dom, [Vif(mac(63), "vnet0", "late upload")])
    b.plug(dom, Vif(mac(63), "tap63"))
    feed = QueueFeed()
    b.start_agent(broker_proc, feed=feed)
    m = await controller.create_migration(dom, a.name, b.name)

    def logged(text: str) -> bool:
        return any(text in r.getMessage() for r in caplog.records)

    # B's worker runs (it subscribes in its first step), idle: A's agent is not
    # running, so nothing is uploaded. Now the guest resumes on B.
    await wait_until(lambda: logged(f"migration {m.id}: incoming"), timeout=20)
    feed.say(dom, "resumed", "migrated")

    async def resume_reported() -> bool:
        return (await controller.get_migration(m.id)).timeline.resumed_at is not None

    await wait_until(resume_reported, timeout=20)
    a.start_agent(broker_proc)
    assert (await controller.wait_applied(m.id, 30)).state == MigrationState.APPLIED
    assert b.portdata("tap63") == "late upload"
    await wait_until(
        lambda: logged(f"migration {m.id}: 1 ports verified after the guest resumed (migrated)"),
        timeout=20,
    )
