"""Destination, step 2: after applying, keep the ports holding what was applied.

When the guest resumes here (a lifecycle event) or a port's data changes to
something else (libvirt's own in-band carry writes its value at its Finish
phase, paired by NIC position), every applied port is read again, and one that
no longer holds the value of the latest generation gets it again; the
re-apply is posted as that generation's result, with a detail saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from vifbroker.backends import BackendError, Outcome, PortEvent
from vifbroker.model import (
    Interface,
    Migration,
    ResultIn,
    VifRecord,
    normalize_mac,
    portdata_digest,
)

from .applying import to_result
from .router import Router

log = logging.getLogger(__name__)


class Verifier:
    """What this process applied and read back, per MAC, and the check that it still holds."""

    def __init__(self, router: Router) -> None:
        self.router = router
        #: MAC → (generation, interface) applied here and read back
        self.applied: dict[str, tuple[int, Interface]] = {}

    def record(self, interfaces: Iterable[Interface], results: Iterable[ResultIn]) -> None:
        """Remember which of ``interfaces`` the posted ``results`` say were applied."""
        by_mac = {i.mac: i for i in interfaces}
        for result in results:
            if result.status == Outcome.APPLIED.value and result.mac in by_mac:
                self.applied[result.mac] = (result.generation, by_mac[result.mac])
            else:
                self.applied.pop(result.mac, None)

    def overwritten(self, events: Sequence[PortEvent]) -> str | None:
        """The name of a port whose data an event shows differing from what was applied."""
        for event in events:
            try:
                applied = self.applied.get(normalize_mac(event.mac))
            except ValueError:
                continue
            if applied is not None and not event.removed and event.portdata != applied[1].portdata:
                return event.name
        return None

    async def verify(
        self, migration: Migration, records: Sequence[VifRecord], why: str
    ) -> list[ResultIn]:
        """Read every applied port again; re-apply the latest generation where it is gone.

        Returns the results of the re-applies (empty: every port still holds it).
        """
        domain = migration.domain_uuid
        latest = {rec.mac: rec.generation for rec in records}
        current = [iface for gen, iface in self.applied.values() if latest.get(iface.mac) == gen]
        owned, _ = self.router.group(current)
        results: list[ResultIn] = []
        for backend, ifaces in owned.values():
            try:
                ports = await backend.inspect(domain, [i.mac for i in ifaces])
                held = {
                    i.mac: port
                    for i in ifaces
                    if (port := ports.get(i.mac)) is not None and port.portdata != i.portdata
                }
                stale = [i for i in ifaces if i.mac in held]
                outcomes = await backend.apply(domain, stale) if stale else []
            except BackendError as exc:
                log.warning("migration %s: verifying ports %s failed: %s", migration.id, why, exc)
                continue
            for iface, outcome in zip(stale, outcomes, strict=True):
                port = held[iface.mac]
                generation = latest[iface.mac]
                result = to_result(iface, generation, outcome)
                detail = (
                    f"re-applied {why}: port {port.name} held {_describe(port.portdata)}"
                    f" instead of generation {generation}"
                )
                log.info("migration %s mac %s: %s", migration.id, iface.mac, detail)
                if result.status == Outcome.APPLIED.value:
                    result = result.model_copy(update={"detail": detail})
                results.append(result)
        if not results:
            # After a resume this is the check the operator wants to see; after a
            # port event it is routine.
            level = logging.INFO if why.startswith("after the guest") else logging.DEBUG
            log.log(level, "migration %s: %d ports verified %s: all hold the latest generation",
                    migration.id, len(current), why)  # fmt: skip
        return results


def _describe(portdata: str | None) -> str:
    """Port data for a log line: its size and digest, never the (opaque) value itself."""
    if portdata is None:
        return "no port data"
    size, digest = len(portdata.encode()), portdata_digest(portdata)[:12]
    return f"other port data ({size} bytes, sha256 {digest})"
