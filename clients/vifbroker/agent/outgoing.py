"""Source side: upload a leaving domain's vifs, then mirror every later change.

The port watch is subscribed to *before* the first collect, so a change made
while collecting is never missed; at worst it is uploaded once more.

A migration an agent registered (no controller vouched for it) is uploaded
for only while this host's libvirt shows the domain with an outgoing
migration job: a host claiming a domain that is not leaving learns nothing of
its port data. Otherwise the source refuses, says why, and cancels it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from vifbroker.backends import BackendError, PortEvent
from vifbroker.client import ClientError, NoActiveMigration, NotFound
from vifbroker.model import Interface, normalize_mac

from .errors import AgentError, DomainNotFound
from .portwatch import Subscription
from .retry import Backoff, monotonic_deadline, remaining
from .worker import Worker

log = logging.getLogger(__name__)


class _Gone(Exception):
    """The migration is no longer active: stop following it."""


class Outgoing(Worker):
    direction = "outgoing"

    @property
    def resume_revision(self) -> int | None:
        # Followed until terminal: a restarted agent must pick it up again.
        return self.item.revision

    async def run(self) -> None:
        deadline = monotonic_deadline(self.item.migration.expires_at)
        with self.subscribe() as sub:
            try:
                if not await self._leaving():
                    return
                current = await self._first_upload(deadline)
                if current is not None:
                    await self._follow(sub, current, deadline)
            except _Gone:
                log.info("migration %s: no longer active, stopped following", self.migration_id)

    async def _leaving(self) -> bool:
        """For an agent-registered migration: whether libvirt here shows the domain
        leaving. The destination registers as soon as its incoming domain exists,
        and the source's job may show only once that domain's QEMU is up (seconds
        on a busy host): asked for ``leaving_window`` seconds (a count of tries
        would run out early: every update of the migration wakes this worker).
        When the job never shows, the migration is cancelled."""
        migration = self.item.migration
        if migration.registered_by is None:
            return True
        reason = "no outgoing migration job"
        backoff = Backoff(0.1, 1.0)
        deadline = time.monotonic() + self.deps.settings.leaving_window
        while True:
            try:
                if await self.deps.domains.migrating_out(migration.domain_uuid):
                    return True
            except AgentError as exc:
                reason = f"cannot ask libvirt ({exc})"
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await self.wait_changed(min(backoff.next(), left))
            if self.stopping:
                return False
        log.warning(
            "migration %s: refusing to upload: domain %s has %s here (registered by %s);"
            " cancelling", migration.id, migration.domain_uuid, reason, migration.registered_by,
        )  # fmt: skip
        try:
            await self.deps.client.cancel(migration.id)
        except ClientError as exc:
            log.warning("migration %s: cancelling failed: %s", migration.id, exc)
        return False

    async def _collect(self) -> list[Interface]:
        interfaces = await self.deps.domains.interfaces(self.domain_uuid)
        return await self.deps.router.collect(self.domain_uuid, interfaces)

    async def _first_upload(self, deadline: float) -> dict[str, Interface] | None:
        backoff = Backoff(0.1, 2.0)
        while not self.stopping:
            try:
                desired = await self._collect()
                stored = {r.mac: r.interface for r in self.item.interfaces}
                changed = [i for i in desired if stored.get(i.mac) != i]
                if changed:
                    await self._upload(changed)
                else:
                    log.info(
                        "migration %s: %d vif records already current",
                        self.migration_id,
                        len(desired),
                    )
                return {i.mac: i for i in desired}
            except DomainNotFound as exc:
                kept = {i.mac: i for i in (r.interface for r in self.item.interfaces) if i}
                if kept:
                    # Gone from this host after the upload (migrated away, or the
                    # agent restarted late): nothing local can change any more.
                    log.info(
                        "migration %s: domain not here (%s); keeping the uploaded records",
                        self.migration_id,
                        exc,
                    )
                    return kept
                if not await self._retry_later(exc, deadline, backoff):
                    return None
            except (AgentError, BackendError, ClientError) as exc:
                if not await self._retry_later(exc, deadline, backoff):
                    return None
        return None

    async def _retry_later(self, exc: Exception, deadline: float, backoff: Backoff) -> bool:
        """Wait before the next attempt; False when the migration's deadline passed."""
        if remaining(deadline) <= 0:
            log.error("migration %s: gave up uploading: %s", self.migration_id, exc)
            return False
        delay = backoff.next()
        log.warning(
            "migration %s: upload failed (%s); retrying in %.2fs", self.migration_id, exc, delay
        )
        await self.wait_changed(delay)
        return True

    async def _upload(self, interfaces: Sequence[Interface]) -> None:
        try:
            result = await self.deps.uploads.upload(self.domain_uuid, interfaces)
        except (NoActiveMigration, NotFound) as exc:
            raise _Gone() from exc
        # One line per upload, not per vif: an evacuation uploads thousands.
        gens = result.generations
        log.info(
            "migration %s: uploaded %s",
            self.migration_id,
            ", ".join(f"mac {i.mac} generation {gens.get(i.mac)}" for i in interfaces),
        )

    async def _follow(
        self, sub: Subscription, current: dict[str, Interface], deadline: float
    ) -> None:
        pending: dict[str, Interface] = {}
        backoff = Backoff(0.1, 2.0)
        while not self.stopping:
            if pending:
                try:
                    await self._upload(list(pending.values()))
                except ClientError as exc:
                    if remaining(deadline) <= 0:
                        log.error("migration %s: gave up uploading: %s", self.migration_id, exc)
                        return
                    delay = backoff.next()
                    log.warning(
                        "migration %s: upload failed (%s); retrying in %.2fs",
                        self.migration_id,
                        exc,
                        delay,
                    )
                    event = await sub.get(delay)
                else:
                    current.update(pending)
                    pending.clear()
                    backoff.reset()
                    event = await sub.get()
            else:
                event = await sub.get()
            events = ([event] if event is not None else []) + sub.drain()
            pending.update(_changes(events, current, pending))


def _changes(
    events: Sequence[PortEvent], current: dict[str, Interface], pending: dict[str, Interface]
) -> dict[str, Interface]:
    """The latest port data per known MAC that differs from what is (to be) uploaded."""
    latest: dict[str, str | None] = {}
    for event in events:
        if event.removed:
            continue
        try:
            mac = normalize_mac(event.mac)
        except ValueError:
            continue
        if mac in current:
            latest[mac] = event.portdata
    out: dict[str, Interface] = {}
    for mac, portdata in latest.items():
        base = pending.get(mac, current[mac])
        if base.portdata != portdata:
            out[mac] = base.with_portdata(portdata)
    return out
