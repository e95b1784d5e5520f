"""Agents and switches that die, stop or restart mid-migration lose nothing."""

from __future__ import annotations

import json
import logging
import signal
import uuid

import pytest
from agent_harness import BrokerProcess, Host, Vif, mac

from testkit import wait_until
from vifbroker.client import BrokerClient
from vifbroker.model import MigrationState, VifStatus

pytestmark = pytest.mark.ovs


async def test_destination_agent_sigkilled_mid_migration_applies_every_vif_once(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    vifs = [Vif(mac(10 + i), f"vnet{i}", f"data-{i}") for i in range(4)]
    a.define(dom, vifs)
    b.plug(dom, Vif(vifs[0].mac, "b0"))
    b.plug(dom, Vif(vifs[1].mac, "b1"))
    a.start_agent(broker_proc)
    token = broker_proc.token_file("agent", b.name)
    first = b.spawn_agent(broker_proc, token, "agent-1.log")
    mid = (await controller.create_migration(dom, a.name, b.name)).id

    async def first_two_applied() -> bool:
        status = {s.mac: s.status for s in (await controller.get_migration(mid)).interfaces}
        return all(status.get(v.mac) == VifStatus.APPLIED for v in vifs[:2])

    await wait_until(first_two_applied, timeout=30)
    # The agent is now waiting for the ports of vifs 2 and 3.
    first.send_signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    b.plug(dom, Vif(vifs[2].mac, "b2"))
    b.plug(dom, Vif(vifs[3].mac, "b3"))
    b.spawn_agent(broker_proc, token, "agent-2.log")

    done = await controller.wait_applied(mid, 60)

    assert done.state == MigrationState.APPLIED
    for i, v in enumerate(vifs):
        assert b.portdata(f"b{i}") == v.portdata
    assert all(s.generation == s.applied_generation == 1 for s in done.interfaces)
    second_run = b.agent_log()
    applied_again = [v.mac for v in vifs if f"mac {v.mac}: applied" in second_run]
    assert applied_again == [vifs[2].mac, vifs[3].mac]


async def test_agent_sigterm_drains_and_exits_cleanly_and_keeps_its_place(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    a.define(dom, [Vif(mac(20), "vnet0", "v")])
    b.plug(dom, Vif(mac(20), "t0"))
    a.start_agent(broker_proc)
    proc = b.spawn_agent(broker_proc, broker_proc.token_file("agent", b.name))
    mid = (await controller.create_migration(dom, a.name, b.name)).id
    assert (await controller.wait_applied(mid, 60)).state == MigrationState.APPLIED

    proc.send_signal(signal.SIGTERM)

    assert proc.wait(30) == 0
    assert "agent host-b stopped" in b.agent_log()
    state = json.loads((b.state_dir / "agent-host-b.json").read_text())
    assert state["after"] >= 1


async def test_destination_ovsdb_down_for_a_while_delays_but_does_not_lose_the_apply(
    broker_proc: BrokerProcess,
    controller: BrokerClient,
    hosts: tuple[Host, Host],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="vifbroker.agent")
    a, b = hosts
    dom = str(uuid.uuid4())
    vifs = [Vif(mac(30), "vnet0", "survives"), Vif(mac(31), "vnet1", "outage")]
    a.define(dom, vifs)
    b.plug(dom, Vif(vifs[0].mac, "b0"))
    b.plug(dom, Vif(vifs[1].mac, "b1"))
    b.ovs.stop()
    a.start_agent(broker_proc)
    b.start_agent(broker_proc)
    mid = (await controller.create_migration(dom, a.name, b.name)).id

    async def destination_retrying() -> bool:
        return any(
            r.name == "vifbroker.agent.applying" and mid in r.getMessage() for r in caplog.records
        )

    await wait_until(destination_retrying, timeout=30)
    assert (await controller.get_migration(mid)).state == MigrationState.UPLOADED
    b.ovs.start()

    done = await controller.wait_applied(mid, 60)

    assert done.state == MigrationState.APPLIED
    assert b.portdata("b0") == "survives"
    assert b.portdata("b1") == "outage"


async def test_restarted_source_agent_resumes_following_without_reuploading(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    a.define(dom, [Vif(mac(40), "vnet0", "before restart")])
    b.plug(dom, Vif(mac(40), "t5"))
    a.start_agent(broker_proc)
    b.start_agent(broker_proc)
    mid = (await controller.create_migration(dom, a.name, b.name)).id
    assert (await controller.wait_applied(mid, 60)).state == MigrationState.APPLIED

    await a.stop_agent()
    a.start_agent(broker_proc)

    async def resumed() -> bool:
        return a.agent is not None and (mid, "outgoing") in a.agent.active()

    await wait_until(resumed, timeout=30)
    assert (await controller.get_interface(dom, mac(40))).generation == 1
    a.ovs.set_portdata("vnet0", "after restart")

    async def gen2_applied() -> bool:
        rec = await controller.get_interface(dom, mac(40))
        return rec.generation == 2 and rec.result.applied_generation == 2

    await wait_until(gen2_applied, timeout=30)
    assert b.portdata("t5") == "after restart"


async def test_terminal_migration_stops_the_source_following(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    a.define(dom, [Vif(mac(50), "vnet0", "x")])
    b.plug(dom, Vif(mac(50), "t0"))
    a.start_agent(broker_proc)
    b.start_agent(broker_proc)
    mid = (await controller.create_migration(dom, a.name, b.name)).id
    assert (await controller.wait_applied(mid, 60)).state == MigrationState.APPLIED

    completed = await controller.complete(mid)

    assert completed.state == MigrationState.COMPLETED

    async def nobody_tracks_it() -> bool:
        return all(
            h.agent is not None and not any(k[0] == mid for k in h.agent.active()) for h in (a, b)
        )

    await wait_until(nobody_tracks_it, timeout=30)
