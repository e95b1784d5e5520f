"""Destination, step 1: wait for a domain's local ports, then apply its vifs.

All pending vifs a backend owns go to that backend in ONE ``apply`` call once
their ports exist (or, once some exist, after ``port_grace`` seconds; the rest
follow in the next round). Backend errors are retried with backoff until the
migration's deadline; then the vifs are reported failed with the last reason.
Applying is idempotent, so a restarted agent simply applies again what has no
result.

While it waits, the step reads this host's own libvirt view of the incoming
domain: a vif whose local NIC the owning backend does not handle (a
``type='user'`` NIC where the source had Open vSwitch) is decided at once,
not at the deadline.

This step is the one place that turns what a backend read back into the
digest the agent posts (:func:`to_result`); the broker compares it with what
was uploaded. A vif no backend here handles is reported ``skipped`` with the
reason; whether that fails the migration (``on_backend_mismatch``) is the
broker's decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from vifbroker.backends import ApplyResult, Backend, BackendError, Outcome, PortNotFound
from vifbroker.model import Interface, Migration, ResultIn, VifRecord, portdata_digest

from .errors import DomainNotFound, DomainXmlError
from .portwatch import Subscription
from .retry import Backoff, remaining, report_deadline
from .router import describe_interface
from .settings import Deps

log = logging.getLogger(__name__)

Outcomes = list[tuple[Interface, ApplyResult]]


def to_result(iface: Interface, generation: int, outcome: ApplyResult) -> ResultIn:
    """The result to post for ``outcome``: the digest of what was read back, and when."""
    applied = outcome.outcome is Outcome.APPLIED
    return ResultIn(
        mac=iface.mac,
        generation=generation,
        status=outcome.outcome.value,
        detail=outcome.detail[:4096] if outcome.detail else None,
        digest=portdata_digest(outcome.readback) if applied else None,
        applied_at=datetime.now(UTC) if applied else None,
    )


class Applier:
    """Applies the pending vifs of one migration, waiting on the worker's subscription."""

    def __init__(self, deps: Deps, sub: Subscription, stopping: Callable[[], bool]) -> None:
        self.deps = deps
        self.sub = sub
        self._stopping = stopping
        #: domain → this host's own NICs by MAC, once libvirt has the domain here
        self._local: dict[str, dict[str, Interface]] = {}

    async def warm(self, migration: Migration) -> None:
        """Before the records arrive: read this host's view of the arriving domain and
        let each backend find its ports, so the apply is one write when they come."""
        domain = migration.domain_uuid
        await self._local_view(domain)
        for backend in self.deps.router.backends:
            try:
                await backend.inspect(domain, [])
            except BackendError as exc:
                log.debug("migration %s: %s not ready yet: %s", migration.id, backend.name, exc)

    async def apply(self, migration: Migration, pending: Sequence[VifRecord]) -> list[ResultIn]:
        """One round: a result for every vif decided (possibly not all of ``pending``)."""
        deadline = report_deadline(migration.expires_at)
        generations = {rec.mac: rec.generation for rec in pending}
        interfaces = [rec.interface for rec in pending if rec.interface is not None]
        owned, unowned = self.deps.router.group(interfaces)
        outcomes: Outcomes = [(iface, self._unowned(iface)) for iface in unowned]
        for group in await asyncio.gather(
            *(self._apply_group(migration, b, ifaces, deadline) for b, ifaces in owned.values())
        ):
            outcomes.extend(group)
        return [to_result(iface, generations[iface.mac], out) for iface, out in outcomes]

    def _unowned(self, iface: Interface) -> ApplyResult:
        names = ", ".join(b.name for b in self.deps.router.backends) or "none"
        return ApplyResult(
            iface.mac,
            Outcome.SKIPPED,
            f"no local backend handles {describe_interface(iface)} (backends here: {names})",
        )

    async def _apply_group(
        self, migration: Migration, backend: Backend, ifaces: list[Interface], deadline: float
    ) -> Outcomes:
        """Wait for the ports, then apply; [] when stopping before anything ran."""
        domain = migration.domain_uuid
        grace = self.deps.settings.port_grace
        backoff = Backoff(0.05, 1.0)
        first_present: float | None = None
        reason = "the local port never appeared"
        local_known = False
        write_first = True
        while not self._stopping():
            if not local_known:
                local = await self._local_view(domain)
                if local is not None:
                    local_known = True
                    decided, ifaces = _triage(backend, ifaces, local)
                    if decided:
                        return decided  # the rest in the next round
            try:
                if write_first:
                    # Mostly every port is there already (a later generation, or
                    # ports plugged before the records came): write at once, with
                    # no look-up first. A missing port writes nothing and raises.
                    write_first = False
                    try:
                        return await self._write(backend, domain, ifaces)
                    except PortNotFound:
                        pass
                ports = await backend.inspect(domain, [i.mac for i in ifaces])
                present = [i for i in ifaces if ports.get(i.mac) is not None]
                now = time.monotonic()
                if present and first_present is None:
                    first_present = now
                if len(present) == len(ifaces) or (
                    present and first_present is not None and now - first_present >= grace
                ):
                    return await self._write(backend, domain, present)
                have = {i.mac for i in present}
                missing = [i.mac for i in ifaces if i.mac not in have]
                reason = f"no local port for vm-id {domain} mac {', '.join(missing)}"
                log.debug("migration %s: waiting: %s", migration.id, reason)
            except BackendError as exc:
                self.deps.metrics.backend_error(backend.name)
                reason = f"{backend.name}: {exc}"
                log.warning("migration %s: %s; retrying", migration.id, reason)
            left = remaining(deadline)
            if left <= 0:
                detail = f"gave up at the migration's deadline: {reason}"
                return [(i, ApplyResult(i.mac, Outcome.FAILED, detail)) for i in ifaces]
            wait = min(backoff.next(), left)
            if first_present is not None:
                wait = min(wait, max(0.0, first_present + grace - time.monotonic()))
            # Any port event of this domain (a port appeared) ends the wait early;
            # the events themselves only describe states before our write.
            await self.sub.get(wait)
            self.sub.drain()
        return []

    async def _write(self, backend: Backend, domain: str, ifaces: list[Interface]) -> Outcomes:
        started = time.monotonic()
        applied = await backend.apply(domain, ifaces)
        self.deps.metrics.applied(backend.name, applied, time.monotonic() - started)
        return list(zip(ifaces, applied, strict=True))

    async def _local_view(self, domain: str) -> dict[str, Interface] | None:
        """This host's own NICs of ``domain`` by MAC; None while it is not here (yet)."""
        if domain in self._local:
            return self._local[domain]
        try:
            found = self._local[domain] = {
                i.mac: i for i in await self.deps.domains.interfaces(domain)
            }
            return found
        except DomainNotFound:
            return None
        except DomainXmlError as exc:
            log.debug("domain %s: no local view (%s)", domain, exc)
            return None


def _triage(
    backend: Backend, ifaces: list[Interface], local: dict[str, Interface]
) -> tuple[Outcomes, list[Interface]]:
    """Vifs whose local NIC ``backend`` cannot serve (decided now), and the rest."""
    decided: Outcomes = []
    rest: list[Interface] = []
    for iface in ifaces:
        here = local.get(iface.mac)
        if here is None:
            detail = "the domain here has no NIC with this MAC"
        elif not backend.handles(here):
            detail = (
                f"the NIC here is {describe_interface(here)}, which {backend.name} "
                f"does not handle (the source's was {describe_interface(iface)})"
            )
        else:
            rest.append(iface)
            continue
        decided.append((iface, ApplyResult(iface.mac, Outcome.SKIPPED, detail)))
    return decided, rest
