"""Open vSwitch backend, vsctl driver: with a watch running, lookups read known rows by UUID.

The watch's monitor knows which rows each domain had a moment ago, so a
lookup asks ovsdb-server for those rows by UUID instead of scanning every
Interface row per domain. What it answers is always read from the database:
the monitor's view only says where to look.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from backend_helpers import (
    OTHER_DOMAIN,
    calls,
    counting_ovsdb_client,
    mac,
    ovs_backend,
    ovs_iface,
    reset,
)

from ovs_harness import OvsDb
from testkit import wait_until
from vifbroker.backends import PortEvent
from vifbroker.backends.openvswitch import OpenVSwitchBackend


def domain(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


@contextlib.asynccontextmanager
async def watched(backend: OpenVSwitchBackend) -> AsyncIterator[list[PortEvent]]:
    events: list[PortEvent] = []

    async def consume() -> None:
        async for event in backend.watch():
            events.append(event)

    task = asyncio.create_task(consume())
    try:
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_known_rows_are_read_by_uuid_without_a_scan(ovsdb: OvsDb, tmp_path: Path) -> None:
    for i in range(3):
        for k in range(2):
            ovsdb.add_port("br-int", f"t{i}-{k}", vm_id=domain(i), mac=mac(i * 2 + k))
    wrapper, log = counting_ovsdb_client(tmp_path)
    async with ovs_backend(ovsdb, ovsdb_client=str(wrapper)) as backend, watched(backend) as seen:
        await wait_until(lambda: len(seen) == 6)
        reset(log)
        found = await asyncio.gather(
            *(backend.inspect(domain(i), [mac(i * 2), mac(i * 2 + 1)]) for i in range(3))
        )
        # A domain the monitor has not seen is still looked for by vm-id.
        ovsdb.add_port("br-int", "t9", vm_id=domain(9), mac=mac(18))
        [late] = (await backend.inspect(domain(9), [mac(18)])).values()
    queries = [line for line in calls(log) if line.startswith("query")]
    assert queries[0] == "query sets=0 scans=0"  # six rows by UUID, no scan
    for i, ports in enumerate(found):
        assert {m: p.name if p else None for m, p in ports.items()} == {
            mac(i * 2): f"t{i}-0",
            mac(i * 2 + 1): f"t{i}-1",
        }
    assert late is not None and late.name == "t9"


async def test_rows_known_by_uuid_are_read_fresh(ovsdb: OvsDb) -> None:
    """Whatever the monitor has or has not reported yet, a lookup answers what the
    database holds: new port data, a port gone, a port re-plugged for another VM."""
    dom = domain(1)
    for k in range(3):
        ovsdb.add_port("br-int", f"t{k}", vm_id=dom, mac=mac(k), portdata=f"old {k}")
    async with ovs_backend(ovsdb) as backend, watched(backend) as seen:
        await wait_until(lambda: len(seen) == 3)
        ovsdb.set_portdata("t0", "new 0")
        ovsdb.del_port("t1")
        ovsdb.vsctl("set", "Interface", "t2", f"external_ids:vm-id={OTHER_DOMAIN}")
        ports = await backend.inspect(dom, [mac(0), mac(1), mac(2)])
    assert ports[mac(0)] is not None and ports[mac(0)].portdata == "new 0"
    assert ports[mac(1)] is None
    assert ports[mac(2)] is None


async def test_getting_ready_for_a_domain_the_watch_knows_costs_no_process(
    ovsdb: OvsDb, tmp_path: Path
) -> None:
    """inspect() with no MAC (the agent getting ready for a domain's records) takes the
    rows from the watch; the write then names them, checking them in its transaction."""
    dom = domain(1)
    for k in range(2):
        ovsdb.add_port("br-int", f"t{k}", vm_id=dom, mac=mac(k))
    wrapper, log = counting_ovsdb_client(tmp_path)
    async with ovs_backend(ovsdb, ovsdb_client=str(wrapper)) as backend, watched(backend) as seen:
        await wait_until(lambda: len(seen) == 2)
        reset(log)
        assert await backend.inspect(dom, []) == {}
        assert calls(log) == []
        results = await backend.apply(dom, [ovs_iface(0, "zero"), ovs_iface(1, "one")])
        assert calls(log) == ["transact sets=2 scans=0"]
        # The vif's port is replaced: the row remembered is gone, the write's check
        # fails, and the ports are looked up again (fresh) and the new one written.
        ovsdb.del_port("t1")
        ovsdb.add_port("br-int", "t1b", vm_id=dom, mac=mac(1))
        [again] = await backend.apply(dom, [ovs_iface(1, "one again")])
    assert [r.readback for r in results] == ["zero", "one"]
    assert again.readback == "one again"
    assert ovsdb.get_portdata("t1b") == "one again"
