"""``--register-migrations``: the destination registers what libvirt says is arriving.

No controller needed (the broker runs with ``--agent-migrations``). When the
local libvirt starts a domain for an incoming migration (lifecycle event
``started``/``migrated``), this host registers the migration with itself as the
destination and no source: the broker takes the host that last reported the
domain running. A controller's migration for the domain already there is a
409: nothing to do (never registered twice). When the arriving domain stops or
vanishes before it resumed (the migration failed or was destroyed), the
registration is cancelled. Completing after the resume is the incoming
worker's job (it knows when every vif is applied).

Also kept here, for every incoming worker: when each domain last resumed on
this host (:class:`ResumeBook`), since a guest may resume before the worker
for its migration has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from datetime import datetime

from vifbroker.client import BrokerClient, ClientError, Conflict, InvalidRequest, NotFound

from .lifecycle import DomainEvent
from .retry import Backoff

log = logging.getLogger(__name__)


class ResumeBook:
    """The latest resume of each domain on this host (bounded)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._at: OrderedDict[str, datetime] = OrderedDict()

    def note(self, event: DomainEvent) -> None:
        if event.resumed:
            self._at[event.domain_uuid] = event.at
            self._at.move_to_end(event.domain_uuid)
            while len(self._at) > self._size:
                self._at.popitem(last=False)

    def since(self, domain_uuid: str, after: datetime) -> datetime | None:
        """When ``domain_uuid`` resumed here at or after ``after`` (None: not since)."""
        at = self._at.get(domain_uuid)
        return at if at is not None and at >= after else None


class Registrar:
    def __init__(self, client: BrokerClient, host: str) -> None:
        self.client = client
        self.host = host
        #: domain → migration id this host registered, until the guest resumes here
        self.pending: dict[str, str] = {}
        self._events: asyncio.Queue[DomainEvent] = asyncio.Queue()

    def on_event(self, event: DomainEvent) -> None:
        if event.arriving or event.resumed or event.gone:
            self._events.put_nowait(event)

    async def run(self) -> None:
        while True:
            event = await self._events.get()
            try:
                if event.arriving:
                    await self._register(event)
                elif event.resumed:
                    self.pending.pop(event.domain_uuid, None)
                elif event.gone and event.domain_uuid in self.pending:
                    await self._cancel(event)
            except ClientError as exc:
                log.warning("domain %s: %s %s: broker said %s",
                            event.domain_uuid, event.event, event.detail, exc)  # fmt: skip

    async def _register(self, event: DomainEvent) -> None:
        domain = event.domain_uuid
        mid = f"{self.host}.{domain[:8]}.{int(event.at.timestamp() * 1000)}"
        backoff = Backoff(0.2, 1.0)
        for attempt in range(8):
            try:
                await self.client.create_migration(domain, None, self.host, id=mid)
            except Conflict as exc:
                log.info("domain %s arriving: not registered (%s)", domain, exc)
                return
            except InvalidRequest as exc:
                # The source's heartbeat naming the domain may be a moment away.
                if attempt == 7:
                    log.warning("domain %s arriving: cannot register: %s", domain, exc)
                    return
                await asyncio.sleep(backoff.next())
                continue
            self.pending[domain] = mid
            log.info("migration %s: registered, domain %s arriving here", mid, domain)
            return

    async def _cancel(self, event: DomainEvent) -> None:
        mid = self.pending.pop(event.domain_uuid)
        log.info("migration %s: domain %s %s (%s) before resuming here; cancelling",
                 mid, event.domain_uuid, event.event, event.detail)  # fmt: skip
        with contextlib.suppress(NotFound, Conflict):
            await self.client.cancel(mid)
