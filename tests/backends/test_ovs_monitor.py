"""Open vSwitch backend: watch() follows Interface rows (ovsdb-client monitor, or the IDL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from backend_helpers import DOMAIN, OTHER_DOMAIN, mac, ovs_backend

from ovs_harness import OvsDb
from testkit import wait_until
from vifbroker.backends import PortEvent
from vifbroker.backends.openvswitch import OpenVSwitchBackend
from vifbroker.backends.openvswitch.native import NativeDriver


def monitor_pids(db: OvsDb) -> list[int]:
    """ovsdb-client processes watching this server (found by their argv)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"monitor" in argv and db.db.encode() in argv:
            pids.append(int(proc.name))
    return pids


def watcher_gone(backend: OpenVSwitchBackend, db: OvsDb) -> bool:
    """The watch lost its server: no monitor process (vsctl), no connection (native)."""
    if isinstance(backend.driver, NativeDriver):
        return not backend.driver.connected
    return not monitor_pids(db)


@contextlib.asynccontextmanager
async def watching(backend: OpenVSwitchBackend) -> AsyncIterator[list[PortEvent]]:
    events: list[PortEvent] = []

    async def consume() -> None:
        async for event in backend.watch():
            events.append(event)

    task = asyncio.create_task(consume())
    try:
        yield events
    finally:
        await backend.close()  # must end the iteration by itself
        await asyncio.wait_for(task, 5)


def seen(events: list[PortEvent], **fields: object) -> bool:
    return any(all(getattr(e, k) == v for k, v in fields.items()) for e in events)


async def test_reports_existing_ports_new_ports_changes_and_removals(
    ovsdb: OvsDb, ovs_driver: str
) -> None:
    ovsdb.add_port("br-int", "vnet0", vm_id=DOMAIN, mac=mac(0), portdata="existing")
    ovsdb.add_port("br-int", "untagged")  # no vm-id: not a VM's port, never reported
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend, watching(backend) as events:
        await wait_until(lambda: seen(events, mac=mac(0), portdata="existing"))
        ovsdb.add_port("br-int", "vnet5", vm_id=DOMAIN, mac=mac(1).upper())
        await wait_until(lambda: seen(events, mac=mac(1), name="vnet5", portdata=None))
        ovsdb.set_portdata("vnet5", 'changed "value"\n')
        await wait_until(lambda: seen(events, mac=mac(1), portdata='changed "value"\n'))
        ovsdb.del_port("vnet5")
        await wait_until(lambda: seen(events, mac=mac(1), removed=True))
    assert all(e.name != "untagged" for e in events)
    assert all(e.domain_uuid == DOMAIN for e in events)
    assert [e.portdata for e in events if e.mac == mac(1)] == [
        None,
        'changed "value"\n',
        'changed "value"\n',
    ]
    assert [e.removed for e in events if e.mac == mac(1)] == [False, False, True]


async def test_survives_server_restart_and_reports_what_changed_meanwhile(
    ovsdb: OvsDb, ovs_driver: str
) -> None:
    ovsdb.add_port("br-int", "vnet0", vm_id=DOMAIN, mac=mac(0), portdata="v1")
    ovsdb.add_port("br-int", "vnet1", vm_id=OTHER_DOMAIN, mac=mac(1))
    async with (
        ovs_backend(ovsdb, driver=ovs_driver, monitor_backoff_max=0.2) as backend,
        watching(backend) as events,
    ):
        await wait_until(lambda: seen(events, mac=mac(0), portdata="v1"))
        await wait_until(lambda: seen(events, mac=mac(1)))
        ovsdb.stop()
        await wait_until(lambda: watcher_gone(backend, ovsdb))
        ovsdb.start()
        # Changed while the monitor was away: vnet1 gone, vnet0 rewritten by hand.
        ovsdb.del_port("vnet1")
        ovsdb.set_portdata("vnet0", "v2")
        await wait_until(lambda: seen(events, mac=mac(0), portdata="v2"))
        await wait_until(lambda: seen(events, mac=mac(1), removed=True))
        # ...and live changes keep flowing after the respawn.
        ovsdb.add_port("br-int", "vnet9", vm_id=DOMAIN, mac=mac(9), portdata="late")
        await wait_until(lambda: seen(events, mac=mac(9), portdata="late"))
    # No replay: each state of vnet0 is reported once.
    assert [e.portdata for e in events if e.mac == mac(0)] == ["v1", "v2"]


async def test_close_kills_the_monitor_process(ovsdb: OvsDb) -> None:
    async with ovs_backend(ovsdb) as backend, watching(backend) as events:
        ovsdb.add_port("br-int", "vnet0", vm_id=DOMAIN, mac=mac(0))
        await wait_until(lambda: seen(events, mac=mac(0)))
        assert len(monitor_pids(ovsdb)) == 1
    await wait_until(lambda: not monitor_pids(ovsdb))


async def test_native_watch_runs_no_process_and_close_ends_its_connection(ovsdb: OvsDb) -> None:
    async with ovs_backend(ovsdb, driver="native") as backend, watching(backend) as events:
        ovsdb.add_port("br-int", "vnet0", vm_id=DOMAIN, mac=mac(0))
        await wait_until(lambda: seen(events, mac=mac(0)))
        assert monitor_pids(ovsdb) == []
        driver = backend.driver
        assert isinstance(driver, NativeDriver) and driver.running and driver.connected
    assert not driver.running and not driver.connected
