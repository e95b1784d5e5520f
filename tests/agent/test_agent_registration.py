"""No controller: agents register, upload, apply, report the resume, complete or cancel.

Real broker process (``--agent-migrations``), real ovsdb-servers, in-process
agents whose libvirt is a directory of domain XML (``<uuid>.migrating-out``
standing for libvirt's outgoing job) and a lifecycle feed the test pushes
libvirt's events into (a fake behind the agent's own DomainFeed seam). The
test never calls the API to create, upload or complete anything.
"""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from agent_harness import BrokerProcess, Host, QueueFeed, Vif, running_broker

from ovs_harness import OvsDb
from testkit import mac, wait_until
from vifbroker.client import BrokerClient, NotFound, RetryPolicy
from vifbroker.model import Migration, MigrationState

pytestmark = pytest.mark.ovs

NAMES = ("host-a", "host-b", "host-c")


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[BrokerProcess]:
    options = {"hosts": NAMES, "args": ("--agent-migrations",)}
    async with running_broker(tmp_path / "broker", **options) as proc:
        yield proc


@pytest.fixture
async def fleet(
    broker: BrokerProcess, tmp_path: Path, ovsdb_factory: Callable[[], OvsDb]
) -> AsyncIterator[dict[str, tuple[Host, QueueFeed]]]:
    out = {}
    for name in NAMES:
        host, feed = Host(name, ovsdb_factory(), tmp_path / name), QueueFeed()
        host.ovs.add_bridge("br-int")
        host.start_agent(broker, feed=feed, heartbeat_interval=0.5,
                         register_migrations=name != "host-a")  # fmt: skip
        out[name] = (host, feed)
    try:
        yield out
    finally:
        for host, _ in out.values():
            await host.stop_agent()


@pytest.fixture
async def observer(broker: BrokerProcess) -> AsyncIterator[BrokerClient]:
    """Only reads (what an operator would look at); never creates or completes."""
    retry = RetryPolicy(attempts=20, base_delay=0.05, max_delay=0.5)
    async with BrokerClient(broker.url, broker.token("controller"), retry=retry) as client:
        yield client


VIFS = [Vif(mac(1), "vnet0", "tenant=blue"), Vif(mac(2), "vnet1", "tenant=red"),
        Vif(mac(3), "macvtap0", None, virtualport=None, type="direct")]  # fmt: skip


async def leaving(a: Host, observer: BrokerClient, *, job: bool = True) -> str:
    """A new domain runs on A (with an outgoing migration job), A's report says so."""
    dom = str(uuid.uuid4())
    a.define(dom, VIFS)
    if job:
        (a.xml_dir / f"{dom}.migrating-out").touch()
    await wait_until(lambda: reported_running(observer, a.name, dom), timeout=20)
    return dom


def arriving(b: Host, dom: str) -> None:
    """libvirt on B created the incoming domain's ports (other tap names)."""
    for i, v in enumerate(VIFS[:2]):
        b.plug(dom, Vif(v.mac, f"in{i}"))


async def find(observer: BrokerClient, dom: str) -> Migration | None:
    found = [m async for m in observer.iter_migrations(domain_uuid=dom)]
    assert len(found) <= 1, found
    return found[0] if found else None


async def the_migration(observer: BrokerClient, dom: str) -> Migration:
    m = await find(observer, dom)
    assert m is not None
    return m


async def reaches(observer: BrokerClient, dom: str, state: MigrationState) -> bool:
    m = await find(observer, dom)
    return m is not None and m.state is state


async def reported_running(observer: BrokerClient, host: str, dom: str) -> bool:
    return any(h.name == host and dom in h.running_domains for h in await observer.list_hosts())


def scrape(broker: BrokerProcess, name: str) -> float:
    with urllib.request.urlopen(f"{broker.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else 0.0


async def test_registered_applied_before_resume_then_completed(
    broker: BrokerProcess, fleet: dict[str, tuple[Host, QueueFeed]], observer: BrokerClient
) -> None:
    (a, _), (b, feed_b) = fleet["host-a"], fleet["host-b"]
    dom = await leaving(a, observer)
    arriving(b, dom)
    feed_b.say(dom, "started", "migrated")

    async def landed() -> bool:
        applied = await reaches(observer, dom, MigrationState.APPLIED)
        return applied and b.portdata("in0") == "tenant=blue" and b.portdata("in1") == "tenant=red"

    # Every OVS port holds its source value, and the broker knows: the guest may resume.
    await wait_until(landed, timeout=30)
    feed_b.say(dom, "resumed", "migrated")

    await wait_until(lambda: reaches(observer, dom, MigrationState.COMPLETED), timeout=30)
    m = await the_migration(observer, dom)
    assert (m.source_host, m.destination_host, m.registered_by) == ("host-a", "host-b", "host-b")
    statuses = {v.mac: v.status.value for v in m.interfaces}
    assert statuses == {mac(1): "applied", mac(2): "applied", mac(3): "skipped"}
    t = m.timeline
    assert t.resumed_at is not None and t.margin_seconds is not None
    assert t.margin_seconds >= 0 and t.late is False
    assert all(
        r.interface is None or r.interface.portdata is None
        for r in await observer.get_interfaces(dom)
    )  # fmt: skip  (purged)
    assert scrape(broker, "vifbroker_resume_margin_seconds_count") == 1
    assert scrape(broker, "vifbroker_late_landings_total") == 0


async def test_a_failed_incoming_domain_cancels_and_purges(
    fleet: dict[str, tuple[Host, QueueFeed]], observer: BrokerClient
) -> None:
    (a, _), (b, feed_b) = fleet["host-a"], fleet["host-b"]
    dom = await leaving(a, observer)
    arriving(b, dom)
    feed_b.say(dom, "started", "migrated")

    await wait_until(lambda: reaches(observer, dom, MigrationState.APPLIED), timeout=30)
    feed_b.say(dom, "stopped", "failed")

    await wait_until(lambda: reaches(observer, dom, MigrationState.CANCELLED), timeout=30)
    records = await observer.get_interfaces(dom)
    assert records and all(r.interface is None or r.interface.portdata is None for r in records)


async def test_a_host_claiming_a_domain_that_is_not_leaving_learns_nothing(
    fleet: dict[str, tuple[Host, QueueFeed]], observer: BrokerClient
) -> None:
    (a, _), (c, feed_c) = fleet["host-a"], fleet["host-c"]
    dom = await leaving(a, observer, job=False)  # running on A, not leaving
    arriving(c, dom)
    feed_c.say(dom, "started", "migrated")

    await wait_until(lambda: reaches(observer, dom, MigrationState.CANCELLED), timeout=30)
    m = await the_migration(observer, dom)
    assert (m.source_host, m.registered_by, m.interfaces) == ("host-a", "host-c", [])
    with pytest.raises(NotFound):
        await observer.get_interfaces(dom)  # nothing was ever uploaded
    assert c.portdata("in0") is None and c.portdata("in1") is None


async def test_a_source_whose_job_shows_late_still_uploads(
    fleet: dict[str, tuple[Host, QueueFeed]], observer: BrokerClient
) -> None:
    """libvirt shows the outgoing job only once the destination's QEMU is up: B
    registers before that, and A keeps asking (the harness's window is 4 s)."""
    (a, _), (b, feed_b) = fleet["host-a"], fleet["host-b"]
    dom = await leaving(a, observer, job=False)
    arriving(b, dom)
    feed_b.say(dom, "started", "migrated")
    await wait_until(lambda: find(observer, dom), timeout=30)  # registered by B
    # The scenario, not a synchronisation: libvirt on A shows the job 2 s after B
    # registered (an agent that gave up after a few quick tries cancelled by then).
    await asyncio.sleep(2.0)
    (a.xml_dir / f"{dom}.migrating-out").touch()

    async def landed() -> bool:
        return await reaches(observer, dom, MigrationState.APPLIED) and (
            b.portdata("in0") == "tenant=blue"
        )

    await wait_until(landed, timeout=30)


async def test_a_late_destination_counts_a_late_landing(
    broker: BrokerProcess, fleet: dict[str, tuple[Host, QueueFeed]], observer: BrokerClient
) -> None:
    (a, _), (b, feed_b) = fleet["host-a"], fleet["host-b"]
    dom = await leaving(a, observer)
    feed_b.say(dom, "started", "migrated")

    await wait_until(lambda: reaches(observer, dom, MigrationState.UPLOADED), timeout=30)
    # The guest resumes before B's ports exist: the apply can only land late.
    feed_b.say(dom, "resumed", "migrated")

    async def resume_known() -> bool:
        m = await find(observer, dom)
        return m is not None and m.timeline.resumed_at is not None

    await wait_until(resume_known, timeout=30)
    before = datetime.now(UTC)
    arriving(b, dom)

    await wait_until(lambda: reaches(observer, dom, MigrationState.COMPLETED), timeout=30)
    t = (await the_migration(observer, dom)).timeline
    assert t.late is True and t.margin_seconds is not None and t.margin_seconds < 0
    assert t.last_applied_at is not None and t.last_applied_at >= before
    assert scrape(broker, "vifbroker_late_landings_total") == 1
    assert scrape(broker, "vifbroker_resume_margin_seconds_count") == 1
