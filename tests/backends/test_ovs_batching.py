"""Open vSwitch backend: how many processes (or native transactions) the work costs.

Wrappers named ovsdb-client and ovs-vsctl log one line per process (with how
many writes it carried) and exec the real binary, so these tests count real
processes against a real ovsdb-server. The vsctl driver looks ports up with
``ovsdb-client query`` and writes with ``ovsdb-client transact``; ovs-vsctl
only writes a domain too large for one ovsdb-client argument.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from backend_helpers import (
    DOMAIN,
    OTHER_DOMAIN,
    calls,
    counting_ovsdb_client,
    counting_vsctl,
    mac,
    ovs_backend,
    ovs_iface,
    reset,
)

from ovs_harness import OvsDb
from vifbroker.backends import Outcome, PortNotFound
from vifbroker.backends.openvswitch.lookup import SELECT_MAX_DOMAINS
from vifbroker.backends.openvswitch.native import NativeDriver
from vifbroker.backends.openvswitch.transact import MAX_TXN_BYTES

VIFS = 10


def plug_domain(db: OvsDb, domain: str, first: int, count: int) -> None:
    for n in range(first, first + count):
        db.add_port("br-int", f"t{n}", vm_id=domain, mac=mac(n))


def domain(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


async def test_one_domain_is_applied_in_one_process(ovsdb: OvsDb, tmp_path: Path) -> None:
    plug_domain(ovsdb, DOMAIN, 0, VIFS)
    wrapper, log = counting_ovsdb_client(tmp_path)
    vsctl, vsctl_log = counting_vsctl(tmp_path)
    async with ovs_backend(ovsdb, ovsdb_client=str(wrapper), vsctl=str(vsctl)) as backend:
        # What the agent does first: wait until every port is there.
        ports = await backend.inspect(DOMAIN, [mac(n) for n in range(VIFS)])
        assert all(ports.values())
        assert calls(log) == ["query sets=0 scans=1"]
        reset(log)
        results = await backend.apply(DOMAIN, [ovs_iface(n, f"data {n}") for n in range(VIFS)])
    assert calls(log) == [f"transact sets={VIFS} scans=0"]
    assert calls(vsctl_log) == []  # no ovs-vsctl: it would download every Interface row
    assert [r.outcome for r in results] == [Outcome.APPLIED] * VIFS
    assert [ovsdb.get_portdata(f"t{n}") for n in range(VIFS)] == [f"data {n}" for n in range(VIFS)]


async def test_cold_apply_writes_every_vif_in_one_process(ovsdb: OvsDb, tmp_path: Path) -> None:
    # Without a previous lookup, apply first finds the ports: one extra
    # read-only process, and still a single one for all the writes.
    plug_domain(ovsdb, DOMAIN, 0, VIFS)
    wrapper, log = counting_ovsdb_client(tmp_path)
    async with ovs_backend(ovsdb, ovsdb_client=str(wrapper)) as backend:
        results = await backend.apply(DOMAIN, [ovs_iface(n, "v") for n in range(VIFS)])
    assert calls(log) == ["query sets=0 scans=1", f"transact sets={VIFS} scans=0"]
    assert {r.outcome for r in results} == {Outcome.APPLIED}


async def test_concurrent_domains_share_processes(ovsdb: OvsDb, tmp_path: Path) -> None:
    domains = 12
    for i in range(domains):
        plug_domain(ovsdb, domain(i), i * 2, 2)
    wrapper, log = counting_ovsdb_client(tmp_path)
    async with ovs_backend(ovsdb, ovsdb_client=str(wrapper), workers=2) as backend:
        lookups = await asyncio.gather(
            *(backend.inspect(domain(i), [mac(i * 2), mac(i * 2 + 1)]) for i in range(domains))
        )
        assert all(all(found.values()) for found in lookups)
        assert calls(log) == [f"query sets=0 scans={domains}"]  # twelve lookups, one query
        reset(log)
        results = await asyncio.gather(
            *(
                backend.apply(
                    domain(i), [ovs_iface(i * 2, f"d{i}a"), ovs_iface(i * 2 + 1, f"d{i}b")]
                )
                for i in range(domains)
            )
        )
    lines = calls(log)
    assert len(lines) < domains, lines
    assert {line.split()[0] for line in lines} == {"transact"}
    assert sum(int(line.split()[1].removeprefix("sets=")) for line in lines) == domains * 2
    for i, pair in enumerate(results):
        assert [r.outcome for r in pair] == [Outcome.APPLIED, Outcome.APPLIED]
        assert ovsdb.get_portdata(f"t{i * 2}") == f"d{i}a"
        assert ovsdb.get_portdata(f"t{i * 2 + 1}") == f"d{i}b"


async def test_many_domains_are_looked_up_in_one_listing(ovsdb: OvsDb, tmp_path: Path) -> None:
    # Past SELECT_MAX_DOMAINS the lookup selects every row (a select per domain
    # costs the server a scan each): still one process, each domain its own ports.
    domains = SELECT_MAX_DOMAINS + 8
    for i in range(domains + 2):  # two more plugged than asked for
        plug_domain(ovsdb, domain(i), i * 2, 2)
    wrapper, log = counting_ovsdb_client(tmp_path)
    async with ovs_backend(ovsdb, ovsdb_client=str(wrapper)) as backend:
        asked = [*range(domains), 999]  # the last one has no port here
        lookups = await asyncio.gather(
            *(backend.inspect(domain(i), [mac(i * 2), mac(i * 2 + 1)]) for i in asked)
        )
    assert calls(log) == ["query sets=0 scans=0"]  # every row, no scan per domain
    for i, found in zip(asked[:-1], lookups, strict=False):
        assert {m: p.name if p else None for m, p in found.items()} == {
            mac(i * 2): f"t{i * 2}",
            mac(i * 2 + 1): f"t{i * 2 + 1}",
        }
    assert set(lookups[-1].values()) == {None}


async def test_one_bad_domain_does_not_fail_the_others(ovsdb: OvsDb, tmp_path: Path) -> None:
    domains = 6
    for i in range(domains):
        plug_domain(ovsdb, domain(i), i, 1)
    wrapper, log = counting_ovsdb_client(tmp_path)
    async with ovs_backend(ovsdb, ovsdb_client=str(wrapper), workers=1) as backend:
        for i in range(domains):
            await backend.inspect(domain(i), [mac(i)])
        # Domain 3's port goes away after the lookup: its remembered row UUID
        # now fails any transaction it is merged into.
        ovsdb.del_port("t3")
        reset(log)
        outcomes = await asyncio.gather(
            *(backend.apply(domain(i), [ovs_iface(i, f"v{i}")]) for i in range(domains)),
            return_exceptions=True,
        )
    writes = [line for line in calls(log) if line.startswith("transact")]
    # All six merged, and that run failed on domain 3's row: the reply names
    # the operation, so the five others ran again at once, without it.
    assert writes == [f"transact sets={domains} scans=0", f"transact sets={domains - 1} scans=0"]
    for i, outcome in enumerate(outcomes):
        if i == 3:
            assert isinstance(outcome, PortNotFound), outcome
        else:
            assert not isinstance(outcome, BaseException), outcome
            assert outcome[0].outcome is Outcome.APPLIED
            assert ovsdb.get_portdata(f"t{i}") == f"v{i}"


async def test_a_replugged_port_is_never_written(ovsdb: OvsDb, ovs_driver: str) -> None:
    """A row found for this domain but re-tagged for another VM since is not written:
    the write checks the row's tags and the backend looks the ports up again."""
    ovsdb.add_port("br-int", "vnet1", vm_id=DOMAIN, mac=mac(1))
    async with ovs_backend(ovsdb, driver=ovs_driver) as backend:
        await backend.inspect(DOMAIN, [mac(1)])  # row UUID remembered
        ovsdb.vsctl("set", "Interface", "vnet1", f"external_ids:vm-id={OTHER_DOMAIN}")
        with pytest.raises(PortNotFound):
            await backend.apply(DOMAIN, [ovs_iface(1, "for the old VM")])
        assert ovsdb.get_portdata("vnet1") is None  # the other VM's port is untouched
        # The vif's real port appears: found and written.
        ovsdb.add_port("br-int", "vnet2", vm_id=DOMAIN, mac=mac(1))
        [result] = await backend.apply(DOMAIN, [ovs_iface(1, "for the old VM")])
    assert result.outcome is Outcome.APPLIED
    assert ovsdb.get_portdata("vnet2") == "for the old VM"
    assert ovsdb.get_portdata("vnet1") is None


async def test_a_domain_too_large_for_one_argument_goes_through_vsctl(
    ovsdb: OvsDb, tmp_path: Path
) -> None:
    # One ovsdb-client transaction is one argv element (128 KiB); ovs-vsctl takes
    # each value as its own, so a domain of several large values still goes in one.
    plug_domain(ovsdb, DOMAIN, 0, 3)
    big = [f"{n}" + "é" * (30 * 1024) for n in range(3)]  # 60 KiB of UTF-8 each
    assert sum(len(v.encode()) for v in big) > MAX_TXN_BYTES
    client, client_log = counting_ovsdb_client(tmp_path)
    vsctl, vsctl_log = counting_vsctl(tmp_path)
    async with ovs_backend(ovsdb, ovsdb_client=str(client), vsctl=str(vsctl)) as backend:
        await backend.inspect(DOMAIN, [mac(n) for n in range(3)])
        results = await backend.apply(DOMAIN, [ovs_iface(n, big[n]) for n in range(3)])
    assert calls(vsctl_log) == ["sets=3"]
    assert [line for line in calls(client_log) if line.startswith("transact")] == []
    assert [r.readback for r in results] == big
    assert [ovsdb.get_portdata(f"t{n}") for n in range(3)] == big


async def test_native_driver_writes_a_domain_in_one_transaction(ovsdb: OvsDb) -> None:
    plug_domain(ovsdb, DOMAIN, 0, VIFS)
    async with ovs_backend(ovsdb, driver="native") as backend:
        driver = backend.driver
        assert isinstance(driver, NativeDriver)
        await backend.inspect(DOMAIN, [mac(n) for n in range(VIFS)])
        results = await backend.apply(DOMAIN, [ovs_iface(n, f"data {n}") for n in range(VIFS)])
        assert driver.transactions == 1
        # Concurrent domains: one transaction each, all in flight together.
        others = [domain(i) for i in range(6)]
        for i, other in enumerate(others):
            plug_domain(ovsdb, other, 100 + i * 2, 2)
        applied = await asyncio.gather(
            *(
                backend.apply(other, [ovs_iface(100 + i * 2 + k, other) for k in range(2)])
                for i, other in enumerate(others)
            )
        )
        assert driver.transactions == 1 + len(others)
    assert [r.outcome for r in results] == [Outcome.APPLIED] * VIFS
    assert [ovsdb.get_portdata(f"t{n}") for n in range(VIFS)] == [f"data {n}" for n in range(VIFS)]
    assert all(r.outcome is Outcome.APPLIED for batch in applied for r in batch)
    assert ovsdb.get_portdata("t111") == others[5]
