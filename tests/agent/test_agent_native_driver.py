"""A journey with both agents on the native OVSDB driver (the hostile values run over
both drivers in test_agent_migration.py).

Each agent holds one OVSDB connection (the ovs package's IDL) instead of
running ovs-vsctl and ovsdb-client: it finds ports, writes them and follows
their changes through it.
"""

from __future__ import annotations

import uuid

import pytest
from agent_harness import BrokerProcess, Host, Vif, mac
from test_agent_migration import migrate, start_with_driver

from testkit import wait_until
from vifbroker.client import BrokerClient, NotFound
from vifbroker.model import MigrationState

pytestmark = pytest.mark.ovs


def start_native(host: Host, broker: BrokerProcess) -> None:
    start_with_driver(host, broker, "native")


async def test_later_change_and_late_port_both_arrive(
    broker_proc: BrokerProcess, controller: BrokerClient, hosts: tuple[Host, Host]
) -> None:
    a, b = hosts
    dom = str(uuid.uuid4())
    a.define(dom, [Vif(mac(1), "vnet1", "first"), Vif(mac(2), "vnet2", "late")])
    b.plug(dom, Vif(mac(1), "tap7"))  # the second port appears only later
    start_native(a, broker_proc)
    start_native(b, broker_proc)
    mid = await migrate(controller, dom, a, b)

    async def applied(n: int, gen: int) -> bool:
        try:
            rec = await controller.get_interface(dom, mac(n))
        except NotFound:  # not uploaded yet
            return False
        return rec.generation == gen and rec.result.applied_generation == gen

    await wait_until(lambda: applied(1, 1), timeout=30)
    assert b.portdata("tap7") == "first"
    b.plug(dom, Vif(mac(2), "tap8"))  # seen through the IDL: the waiting apply goes on
    assert (await controller.wait_applied(mid, 60)).state == MigrationState.APPLIED
    assert b.portdata("tap8") == "late"

    a.ovs.set_portdata("vnet1", 'second "value"\n')  # followed through the IDL on A
    await wait_until(lambda: applied(1, 2), timeout=30)
    assert b.portdata("tap7") == 'second "value"\n'
