"""Two replicas on one PostgreSQL: one SIGKILLed mid-migration, nothing is lost or repeated.

Two agents (real ``vifbroker agent`` processes on throwaway ovsdb-servers) and
a controller are given both replica URLs. Half of the domains are applied
before the kill; the other half's destination ports appear only after it, and
some source port data changes after it (new generations, uploaded through the
surviving replica). Every vif must end applied at its latest generation with
the source's value in the destination OVSDB, the controller's barrier (parked
on the killed replica at the kill) must still answer, and the destination
agent's log must show each (migration, MAC, generation) applied exactly once.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable

import aiohttp
import pytest
from agent_harness import BrokerProcess, Host, Vif, mac
from fleet import Fleet, metric

from ovs_harness import OvsDb
from testkit import wait_until
from vifbroker.model import MigrationState

pytestmark = [pytest.mark.reliability, pytest.mark.ovs, pytest.mark.postgres]

DOMAINS = 6
VIFS = 3
#: the destination agent's line per results post: "migration M: mac X: applied generation N; …"
POSTED = re.compile(r"migration (\S+): (mac .*)")
APPLIED = re.compile(r"mac (\S+): applied generation (\d+)")


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_replica_sigkilled_mid_migration(
    fleet: Fleet, store_url: str, ovsdb_factory: Callable[[], OvsDb]
) -> None:
    first, second = await fleet.start_replica(), await fleet.start_replica()
    src = fleet.host("host-a", ovsdb_factory())
    dst = fleet.host("host-b", ovsdb_factory())
    domains: dict[str, list[Vif]] = {str(uuid.uuid4()): [] for _ in range(DOMAINS)}
    for d, (dom, vifs) in enumerate(domains.items()):
        vifs.extend(Vif(mac(d * VIFS + i), f"a{d}-{i}", f"v1 {d}/{i}") for i in range(VIFS))
        src.define(dom, vifs)
    early, late = list(domains)[: DOMAINS // 2], list(domains)[DOMAINS // 2 :]
    for dom in early:
        _plug(dst, dom, domains[dom])
    fleet.spawn_agent(src, "agent-a.log")
    fleet.spawn_agent(dst, "agent-b.log")
    controller = fleet.controller()  # prefers the first replica, like the agents
    ids = {dom: (await controller.create_migration(dom, src.name, dst.name)).id for dom in domains}

    async def applied(doms: list[str]) -> bool:
        for dom in doms:
            if (await controller.get_migration(ids[dom])).state != MigrationState.APPLIED:
                return False
        return True

    await wait_until(lambda: applied(early), timeout=60, interval=0.1)
    barrier = asyncio.create_task(controller.wait_applied(ids[late[-1]], 90))
    async with aiohttp.ClientSession() as session:
        # Parked on the first replica: the barrier and both agents' inbox polls.
        await wait_until(lambda: _parked_at_least(session, first, 3), timeout=30)
        assert not barrier.done()
        killed_at = time.monotonic()
        first.kill()
        await controller.get_migration(ids[early[0]])
        failover_s = time.monotonic() - killed_at

    changed = [(early[0], 0), (late[0], 1)]
    for dom, i in changed:
        vif = domains[dom][i]
        vif.portdata = f"v2 after the kill {dom[:8]}/{i}"
        src.ovs.set_portdata(vif.tap, vif.portdata)
    for dom in late:
        _plug(dst, dom, domains[dom])

    async def uploaded_again() -> bool:
        for dom, i in changed:
            if (await controller.get_interface(dom, domains[dom][i].mac)).generation != 2:
                return False
        return True

    # The source agent uploads each change through the surviving replica.
    await wait_until(uploaded_again, timeout=60, interval=0.1)

    done = await asyncio.wait_for(barrier, 120)
    barrier_s = time.monotonic() - killed_at
    assert done.state == MigrationState.APPLIED, done
    latest: dict[tuple[str, str], int] = {}
    for dom, vifs in domains.items():
        m = await controller.wait_applied(ids[dom], 60)
        assert m.state == MigrationState.APPLIED, m
        for s in m.interfaces:
            assert s.applied_generation == s.generation, (dom, s)
            latest[(m.id, s.mac)] = s.generation
        for i, vif in enumerate(vifs):
            assert dst.portdata(f"b{_short(dom)}-{i}") == vif.portdata
    assert sum(1 for g in latest.values() if g == 2) == len(changed)

    applies = Counter(
        (post.group(1), m.group(1), int(m.group(2)))
        for post in POSTED.finditer(dst.agent_log())
        for m in APPLIED.finditer(post.group(2))
    )
    repeated = [k for k, n in applies.items() if n > 1]
    assert repeated == [], f"applied more than once: {repeated}"
    missing = [k for k, g in latest.items() if (k[0], k[1], g) not in applies]
    assert missing == [], f"latest generation never applied: {missing}"
    assert second.proc is not None and second.proc.poll() is None
    print(json.dumps({
        "test": "replica_failover", "domains": DOMAINS, "vifs": DOMAINS * VIFS,
        "controller_failover_s": round(failover_s, 4),
        "kill_to_last_barrier_s": round(barrier_s, 3),
    }))  # fmt: skip


def _short(dom: str) -> str:
    return dom[:8]


def _plug(host: Host, dom: str, vifs: list[Vif]) -> None:
    """The destination's ports for ``dom``, under other tap names than the source's."""
    for i, vif in enumerate(vifs):
        host.plug(dom, Vif(vif.mac, f"b{_short(dom)}-{i}"))


async def _parked_at_least(session: aiohttp.ClientSession, broker: BrokerProcess, n: int) -> bool:
    return await metric(session, broker, "vifbroker_open_longpolls") >= n
