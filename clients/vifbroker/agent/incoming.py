"""Destination side: wait for the local ports, apply a domain's pending vifs, report.

A vif is pending when its record's generation has no result yet. All pending
vifs a backend owns go to that backend in ONE ``apply`` call once their ports
exist (or, once some exist, after ``port_grace`` seconds; the rest follow).
Backend errors are retried with backoff until the migration's ``expires_at``;
then the vifs are reported failed with the last reason. Applying is
idempotent, so a restarted agent simply applies again what has no result.

While it waits for ports, the agent reads its own libvirt's view of the
incoming domain (the same domain source the source side uses): a vif whose
local NIC the owning backend does not handle (a ``type='user'`` NIC where the
source had Open vSwitch) is decided at once, not at the deadline.

After applying, the worker keeps watching until the migration ends: when the
guest resumes here (a lifecycle event) or a port's data changes to something
else (libvirt's own in-band carry writes its value at its Finish phase, paired
by NIC position), every applied port is read again, and one that no longer
holds the value of the latest generation gets it again; the re-apply is
logged and posted as that generation's result, with a detail saying so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from vifbroker.backends import ApplyResult, Backend, BackendError, Outcome, PortEvent
from vifbroker.client import ClientError, Conflict, NotFound
from vifbroker.model import (
    InboxItem,
    Interface,
    Migration,
    ResultIn,
    VifRecord,
    VifStatus,
    normalize_mac,
    portdata_digest,
)

from .errors import DomainNotFound, DomainXmlError
from .portwatch import Subscription
from .retry import Backoff, monotonic_deadline, remaining, report_deadline
from .router import describe_interface
from .tracker import Deps, Tracker

log = logging.getLogger(__name__)


class Incoming(Tracker):
    direction = "incoming"

    def __init__(self, item: InboxItem, deps: Deps) -> None:
        super().__init__(item, deps)
        #: MAC → the newest generation this process posted a result for
        self._posted: dict[str, int] = {}
        self._busy_since: int | None = item.revision
        #: MAC → (generation, interface) this process applied and read back
        self._applied: dict[str, tuple[int, Interface]] = {}

    @property
    def resume_revision(self) -> int | None:
        return self._busy_since

    def update(self, item: InboxItem) -> None:
        super().update(item)
        if self._busy_since is None and self._pending(item):
            self._busy_since = item.revision
        for sub in self._subs:  # the idle worker waits on its port subscription
            sub.wake()

    def _pending(self, item: InboxItem) -> list[VifRecord]:
        out = []
        for rec in item.interfaces:
            if rec.interface is None or self._posted.get(rec.mac, 0) >= rec.generation:
                continue
            result = rec.result
            if result.status != VifStatus.PENDING and result.applied_generation >= rec.generation:
                continue
            out.append(rec)
        return out

    async def run(self) -> None:
        with self.subscribe(self.item.migration.domain_uuid) as sub:
            while not self.stopping:
                item = self.item
                if item.migration.state.terminal:
                    return
                pending = self._pending(item)
                if not pending:
                    self._busy_since = None
                    await self._idle(item.migration, sub)
                    continue
                if self._busy_since is None:
                    self._busy_since = item.revision
                results = await self._apply(item.migration, pending)
                if results and not await self._post(item.migration, results):
                    return

    # -- applying ----------------------------------------------------------------------

    async def _apply(self, migration: Migration, pending: Sequence[VifRecord]) -> list[ResultIn]:
        deadline = report_deadline(migration.expires_at)
        generations = {rec.mac: rec.generation for rec in pending}
        interfaces = [rec.interface for rec in pending if rec.interface is not None]
        owned, unowned = self.deps.router.group(interfaces)
        outcomes: list[tuple[Interface, ApplyResult]] = [
            (iface, self._mismatch(iface)) for iface in unowned
        ]
        for group in await asyncio.gather(
            *(self._apply_group(migration, b, ifaces, deadline) for b, ifaces in owned.values())
        ):
            outcomes.extend(group)
        results = []
        for iface, outcome in outcomes:
            result = self._judge(migration, iface, generations[iface.mac], outcome)
            log.info(
                "migration %s mac %s: %s generation %d%s",
                migration.id,
                iface.mac,
                result.status,
                result.generation,
                f" ({result.detail})" if result.detail else "",
            )
            if result.status == Outcome.APPLIED.value:
                self._applied[iface.mac] = (result.generation, iface)
            else:
                self._applied.pop(iface.mac, None)
            results.append(result)
        return results

    def _mismatch(self, iface: Interface) -> ApplyResult:
        names = ", ".join(b.name for b in self.deps.router.backends) or "none"
        return ApplyResult(
            iface.mac,
            Outcome.SKIPPED,
            f"no local backend handles {describe_interface(iface)} (backends here: {names})",
        )

    def _judge(
        self, migration: Migration, iface: Interface, generation: int, outcome: ApplyResult
    ) -> ResultIn:
        status, detail, digest = outcome.outcome, outcome.detail, outcome.digest
        read_back_differs = digest is not None and digest != portdata_digest(iface.portdata)
        if status == Outcome.APPLIED and read_back_differs:
            status, detail = Outcome.FAILED, "port data read back differs from the record"
        if status == Outcome.SKIPPED and migration.on_backend_mismatch == "fail":
            status = Outcome.FAILED
        return ResultIn(
            mac=iface.mac,
            generation=generation,
            status=status.value,
            detail=detail[:4096] if detail else None,
            digest=digest if status == Outcome.APPLIED else None,
        )

    async def _apply_group(
        self, migration: Migration, backend: Backend, ifaces: list[Interface], deadline: float
    ) -> list[tuple[Interface, ApplyResult]]:
        """Wait for the ports, then apply; [] when stopping before anything ran."""
        domain = migration.domain_uuid
        grace = self.deps.settings.port_grace
        backoff = Backoff(0.05, 1.0)
        first_present: float | None = None
        reason = "the local port never appeared"
        local_known = False
        with self.subscribe(domain) as sub:
            while not self.stopping:
                if not local_known:
                    local = await self._local_view(domain)
                    if local is not None:
                        local_known = True
                        decided, ifaces = self._triage(backend, ifaces, local)
                        if decided:
                            return decided  # the rest in the next round
                try:
                    ports = await backend.inspect(domain, [i.mac for i in ifaces])
                    present = [i for i in ifaces if ports.get(i.mac) is not None]
                    now = time.monotonic()
                    if present and first_present is None:
                        first_present = now
                    if len(present) == len(ifaces) or (
                        present and first_present is not None and now - first_present >= grace
                    ):
                        return list(zip(present, await backend.apply(domain, present), strict=True))
                    have = {i.mac for i in present}
                    missing = [i.mac for i in ifaces if i.mac not in have]
                    reason = f"no local port for vm-id {domain} mac {', '.join(missing)}"
                    log.debug("migration %s: waiting: %s", migration.id, reason)
                except BackendError as exc:
                    reason = f"{backend.name}: {exc}"
                    log.warning("migration %s: %s; retrying", migration.id, reason)
                left = remaining(deadline)
                if left <= 0:
                    detail = f"gave up at the migration's deadline: {reason}"
                    return [(i, ApplyResult(i.mac, Outcome.FAILED, detail)) for i in ifaces]
                wait = min(backoff.next(), left)
                if first_present is not None:
                    wait = min(wait, max(0.0, first_present + grace - time.monotonic()))
                # Any port event of this domain (a port appeared) ends the wait early.
                await sub.get(wait)
        return []

    async def _local_view(self, domain: str) -> dict[str, Interface] | None:
        """This host's own NICs of ``domain`` by MAC; None while it is not here (yet)."""
        try:
            return {i.mac: i for i in await self.deps.domains.interfaces(domain)}
        except DomainNotFound:
            return None
        except DomainXmlError as exc:
            log.debug("domain %s: no local view (%s)", domain, exc)
            return None

    def _triage(
        self, backend: Backend, ifaces: list[Interface], local: dict[str, Interface]
    ) -> tuple[list[tuple[Interface, ApplyResult]], list[Interface]]:
        """Vifs whose local NIC ``backend`` cannot serve (decided now), and the rest."""
        decided: list[tuple[Interface, ApplyResult]] = []
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

    # -- after applying: the guest resumes, libvirt writes its own value --------------

    async def _idle(self, migration: Migration, sub: Subscription) -> None:
        """Wait for an inbox change or a local event; verify the ports when one asks for it."""
        first = await sub.get()
        events = ([first] if first is not None else []) + sub.drain()
        resumed = [e for e in sub.take_lifecycle() if e.resumed]
        if self.stopping or not self._applied:
            return
        if resumed:
            await self._verify(migration, f"after the guest resumed ({resumed[-1].detail})")
        elif changed := self._overwritten(events):
            await self._verify(migration, f"after an event on port {changed}")

    def _overwritten(self, events: Sequence[PortEvent]) -> str | None:
        """The name of a port whose data an event shows differing from what was applied."""
        for event in events:
            try:
                applied = self._applied.get(normalize_mac(event.mac))
            except ValueError:
                continue
            if applied is not None and not event.removed and event.portdata != applied[1].portdata:
                return event.name
        return None

    async def _verify(self, migration: Migration, why: str) -> None:
        """Read every applied port again; re-apply the latest generation where it is gone."""
        domain = migration.domain_uuid
        latest = {rec.mac: rec.generation for rec in self.item.interfaces}
        current = [iface for gen, iface in self._applied.values() if latest.get(iface.mac) == gen]
        owned, _ = self.deps.router.group(current)
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
                result = self._judge(migration, iface, generation, outcome)
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
            # port event (often our own write, seen late) it is routine.
            level = logging.INFO if why.startswith("after the guest") else logging.DEBUG
            log.log(level, "migration %s: %d ports verified %s: all hold the latest generation",
                    migration.id, len(current), why)  # fmt: skip
            return
        await self._post(migration, results)

    # -- reporting ---------------------------------------------------------------------

    async def _post(self, migration: Migration, results: list[ResultIn]) -> bool:
        """Post until accepted; False when the migration is gone (stop tracking)."""
        deadline = monotonic_deadline(migration.expires_at)
        backoff = Backoff(0.1, 2.0)
        while True:
            try:
                await self.deps.client.post_results(migration.id, results)
            except (NotFound, Conflict) as exc:
                log.info("migration %s: results not taken (%s); stopping", migration.id, exc)
                return False
            except ClientError as exc:
                if remaining(deadline) <= 0:
                    log.error("migration %s: could not post results: %s", migration.id, exc)
                    return False
                delay = backoff.next()
                log.warning(
                    "migration %s: posting results failed (%s); retrying in %.2fs",
                    migration.id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            for r in results:
                self._posted[r.mac] = max(self._posted.get(r.mac, 0), r.generation)
            return True


def _describe(portdata: str | None) -> str:
    """Port data for a log line: its size and digest, never the (opaque) value itself."""
    if portdata is None:
        return "no port data"
    size, digest = len(portdata.encode()), portdata_digest(portdata)[:12]
    return f"other port data ({size} bytes, sha256 {digest})"
