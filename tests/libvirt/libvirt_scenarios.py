"""The end-to-end scenarios, each runnable with vifbroker or with libvirt's carry only.

A scenario returns one :class:`Leg` per ``virsh migrate --live``. With
``vifbroker=True`` the test is the controller: it creates the migration in the
broker, waits for the source agent's upload, migrates, waits on the applied
barrier while libvirt migrates, and completes. With ``vifbroker=False`` the
agents are not running and no migration exists in the broker: whatever the
destination ports hold is libvirt 9.0's own position-based carry.

Every leg is timed on the destination (``libvirt_timing.MigrationTimer``):
when the guest resumed there, and when each port's final value landed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from libvirt_harness import Guest, HarnessError, Host, Nic, Testbed, migrate
from libvirt_stack import AgentPair, Broker
from libvirt_timing import MigrationTimer, PortTiming

from vifbroker.client import BrokerClient, RetryPolicy
from vifbroker.model import Migration, MigrationState, VifRecord

GuestFactory = Callable[[Sequence[Nic], Host], Guest]
#: run while libvirt migrates; gets the broker's migration (None: libvirt only)
During = Callable[[Migration | None], Awaitable[None]]


@dataclass
class Leg:
    """One live migration and what the destination ports ended with."""

    title: str
    guest: Guest
    src: Host
    dst: Host
    #: MAC → the value the source port held when the guest left
    sent: dict[str, str]
    timings: list[PortTiming]
    #: libvirt's own PortData commands and complaints, from both daemons' logs
    evidence: list[str]
    migration: Migration | None = None
    #: MAC → the broker's record just before ``complete`` (vifbroker only)
    records: dict[str, VifRecord] = field(default_factory=dict)
    #: when the applied barrier answered (epoch seconds; vifbroker only)
    barrier_at: float | None = None

    @property
    def held(self) -> dict[str, str | None]:
        return {t.mac: t.portdata for t in self.timings}


def show_value(value: str | None, width: int = 30) -> str:
    """A value for one table cell: escaped, and cut (with its size) when long."""
    if value is None:
        return "(none)"
    text = json.dumps(value, ensure_ascii=False)[1:-1]
    if len(text) <= width:
        return text
    return f"{text[: width - 14]}… ({len(value.encode())} B)"


class Controller:
    """The test in the controller's role, over the real client, plus the testbed."""

    def __init__(
        self, bed: Testbed, broker: Broker, agents: AgentPair, make_guest: GuestFactory
    ) -> None:
        self.bed = bed
        self.broker = broker
        self.agents = agents
        self.make_guest = make_guest
        self.client = BrokerClient(
            broker.url, broker.controller_token,
            retry=RetryPolicy(attempts=20, base_delay=0.05, max_delay=0.5),
        )  # fmt: skip

    async def close(self) -> None:
        await self.client.close()

    async def wait_uploaded(self, migration_id: str, macs: Sequence[str]) -> Migration:
        """Until the source agent has uploaded a record for every NIC."""
        return await self.until(
            lambda m: {v.mac for v in m.interfaces} >= set(macs), migration_id, "source upload"
        )

    async def until(
        self, ok: Callable[[Migration], bool], migration_id: str, what: str, timeout: float = 60
    ) -> Migration:
        async with asyncio.timeout(timeout):
            while True:
                m = await self.client.get_migration(migration_id)
                if ok(m):
                    return m
                await asyncio.sleep(0.02)
        raise AssertionError("unreachable")  # pragma: no cover

    async def leg(
        self,
        title: str,
        guest: Guest,
        src: Host,
        dst: Host,
        *,
        vifbroker: bool,
        during: During | None = None,
        extra: Sequence[str] = (),
        dst_view: Guest | None = None,
    ) -> Leg:
        """One migration; ``dst_view``: the guest as the destination defines it, when
        ``extra`` passes it another XML (``--xml``)."""
        view = dst_view or guest
        ovs_here = {n.mac for n in view.ovs_nics}
        sent = {n.mac: p.portdata for n in guest.ovs_nics if (p := src.ovs_port(guest.uuid, n.mac))}
        migration: Migration | None = None
        if vifbroker:
            assert self.agents.running, "vifbroker legs need the agents"
            migration = await self.client.create_migration(
                guest.uuid, src.name, dst.name, domain_name=guest.name, ttl_seconds=300
            )
            await self.wait_uploaded(migration.id, [n.mac for n in guest.nics])
        offsets = {h.name: h.log_offset() for h in (src, dst)}
        with MigrationTimer(dst) as timer:
            moving = asyncio.ensure_future(asyncio.to_thread(migrate, guest, src, dst, extra=extra))
            if during is not None:
                await during(migration)
                sent = {
                    n.mac: p.portdata for n in guest.ovs_nics
                    if (p := src.ovs_port(guest.uuid, n.mac))
                }  # fmt: skip
            barrier_at = None
            if migration is not None:
                barrier = asyncio.ensure_future(self._barrier(migration.id))
                await asyncio.wait({moving, barrier}, return_when=asyncio.FIRST_EXCEPTION)
                if moving.done() and moving.exception() is not None:
                    barrier.cancel()
                migration, barrier_at = await barrier
            await moving
            timings = await asyncio.to_thread(timer.collect, view)
        evidence = [
            f"{h.name}: {line}" for h in (src, dst) for line in h.portdata_log(offsets[h.name])
        ]
        sent = {m: v for m, v in sent.items() if v and m in ovs_here}
        leg = Leg(title, guest, src, dst, sent, timings, evidence, barrier_at=barrier_at)
        if migration is not None:
            leg.migration = migration
            await self._after_resume(leg, migration)
        return leg

    async def _barrier(self, migration_id: str) -> tuple[Migration, float]:
        """The applied barrier, and when it answered."""
        migration = await self.client.wait_applied(migration_id, 120)
        return migration, time.time()

    async def _after_resume(self, leg: Leg, migration: Migration) -> None:
        """Wait for the destination agent's post-resume check, then complete."""
        agent = self.agents.agents[leg.dst.name]
        needle = f"migration {migration.id}"

        def checked() -> bool:
            return any(
                needle in line and "after the guest resumed" in line
                for line in agent.log().splitlines()
            )

        await asyncio.to_thread(
            _wait, checked, 30, f"{leg.dst.name} agent: post-resume check of {migration.id}"
        )
        leg.records = {r.mac: r for r in await self.client.get_interfaces(leg.guest.uuid)}
        done = await self.client.complete(migration.id)
        assert done.state == MigrationState.COMPLETED


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    from libvirt_proc import wait_for

    wait_for(predicate, timeout, what)


def check_landed_before_resume(leg: Leg) -> None:
    """Every OVS port holds a value that landed in the destination OVSDB before the
    guest resumed there (the ordering the issue asks to prove)."""
    for t in leg.timings:
        assert t.portdata is not None, f"{leg.title}: {t.mac} holds no port data"
        assert t.landed_at is not None, f"{leg.title}: no landing seen for {t.mac}"
        assert t.landed_at < t.resumed_at, (
            f"{leg.title}: {t.mac} landed {-(t.margin_ms or 0):.1f} ms after the resume"
        )


def reapplied(leg: Leg) -> dict[str, str]:
    """MAC → the agent's 're-applied …' detail, for vifs it had to write again."""
    return {
        mac: rec.result.detail
        for mac, rec in leg.records.items()
        if rec.result.detail and rec.result.detail.startswith("re-applied")
    }


def leg_table(leg: Leg, label: str) -> str:
    lines = [
        f"{leg.title} [{label}] ({leg.guest.name}, {leg.src.name} -> {leg.dst.name})",
        f"  {'mac':<17}  {'dst port':<8}  {'source PortData':<30}  {'destination PortData':<30}"
        "  margin (resume - landing)",
    ]
    for t in leg.timings:
        margin = "-" if t.margin_ms is None else f"{t.margin_ms:+.1f} ms"
        lines.append(
            f"  {t.mac:<17}  {t.port or '-':<8}  {show_value(leg.sent.get(t.mac)):<30}  "
            f"{show_value(t.portdata):<30}  {margin}"
        )
    for mac, detail in reapplied(leg).items():
        lines.append(f"  agent re-applied {mac}: {detail}")
    lines += [f"    libvirt log {line[:160]}" for line in leg.evidence]
    return "\n".join(lines)


def side_by_side(libvirt_only: Leg, vifbroker: Leg) -> str:
    """Per NIC position: the source value, what libvirt alone left, what vifbroker left."""
    lines = [
        f"{vifbroker.title}: {vifbroker.src.name} -> {vifbroker.dst.name}",
        f"  {'NIC':<4}  {'source PortData':<30}  {'libvirt only':<30}  {'with vifbroker':<30}"
        "  vifbroker margin",
    ]
    for i, (base, ours) in enumerate(zip(libvirt_only.timings, vifbroker.timings, strict=True)):
        margin = "-" if ours.margin_ms is None else f"{ours.margin_ms:+.1f} ms"
        lines.append(
            f"  #{i + 1:<3}  {show_value(vifbroker.sent.get(ours.mac)):<30}  "
            f"{show_value(base.portdata):<30}  {show_value(ours.portdata):<30}  {margin}"
        )
    return "\n".join(lines)


def user_nic_xml(src: Host, guest: Guest, mac: str) -> str:
    """``guest``'s migratable XML with NIC ``mac`` turned into ``type='user'`` (same
    MAC, model and PCI address), for ``virsh migrate --xml``."""
    xml = src.virsh("dumpxml", "--migratable", guest.name)
    for block in re.findall(r"<interface type='bridge'>.*?</interface>", xml, re.S):
        if f"<mac address='{mac}'/>" in block:
            keep = re.findall(r"<mac [^>]*/>|<model [^>]*/>|<address [^>]*/>", block)
            return xml.replace(block, f"<interface type='user'>{''.join(keep)}</interface>", 1)
    raise HarnessError(f"{src.name}: no bridge NIC {mac} in {guest.name}")


async def expect_refused(guest: Guest, src: Host, dst: Host) -> str:
    """Migrate and expect libvirt to fail; returns its error text."""
    try:
        await asyncio.to_thread(migrate, guest, src, dst)
    except HarnessError as exc:
        return str(exc)
    raise AssertionError(f"{src.name} -> {dst.name}: the migration of {guest.name} succeeded")
