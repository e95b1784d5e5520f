"""Destination side: one worker per arriving migration, in three steps.

1. :mod:`.applying` waits for the local ports and applies every pending vif
   (a vif is pending when its record's generation has no result yet);
2. :mod:`.reporting` posts the results;
3. :mod:`.verifying`, once nothing is pending, re-reads the applied ports when
   the guest resumes here or a port event shows other data, and re-applies.

When the guest resumes here the worker reports the time (the broker's
timeline and margin); a migration this host registered itself
(``--register-migrations``) is completed once the guest runs here and every
vif has its outcome.

The worker holds ONE subscription to its domain's port and lifecycle events for
its whole run; the apply step consumes the port events it waited on (they
describe states before its own write), so the idle step sees only later ones.
A resume is kept until a check follows it: one that comes before anything was
applied (the upload was late, or the worker started after it) is checked as
soon as the apply has landed, the case where the check matters most.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from vifbroker.client import ClientError, Conflict, NotFound
from vifbroker.model import InboxItem, Migration, MigrationState, VifRecord, VifStatus

from .applying import Applier
from .portwatch import Subscription
from .reporting import Reporter
from .settings import Deps
from .verifying import Verifier
from .worker import Worker

log = logging.getLogger(__name__)


class Incoming(Worker):
    direction = "incoming"

    def __init__(self, item: InboxItem, deps: Deps) -> None:
        super().__init__(item, deps)
        self.reporter = Reporter(deps.results)
        self.verifier = Verifier(deps.router)
        self._busy_since: int | None = item.revision
        self._resume_report: asyncio.Task[None] | None = None
        #: the detail of a resume no check has followed yet
        self._unchecked_resume: str | None = None

    @property
    def resume_revision(self) -> int | None:
        return self._busy_since

    def update(self, item: InboxItem) -> None:
        super().update(item)
        if self._busy_since is None and self._pending(item):
            self._busy_since = item.revision

    def _pending(self, item: InboxItem) -> list[VifRecord]:
        out = []
        posted = self.reporter.posted
        for rec in item.interfaces:
            if rec.interface is None or posted.get(rec.mac, 0) >= rec.generation:
                continue
            result = rec.result
            if result.status != VifStatus.PENDING and result.applied_generation >= rec.generation:
                continue
            out.append(rec)
        return out

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self._resume_report is not None:
                await asyncio.wait({self._resume_report}, timeout=10)

    async def _run(self) -> None:
        with self.subscribe() as sub:
            migration = self.item.migration
            if self.deps.resumes.since(migration.domain_uuid, migration.created_at) is not None:
                self._unchecked_resume = "before this worker started"
            applier = Applier(self.deps, sub, lambda: self.stopping)
            warmed = False
            while not self.stopping:
                item = self.item
                if item.migration.state.terminal:
                    return
                if not await self._after_resume(item.migration):
                    return
                pending = self._pending(item)
                if not pending and not warmed and not item.interfaces:
                    warmed = True  # registered before the upload: get ready for it
                    await applier.warm(item.migration)
                    continue
                if not pending:
                    self._busy_since = None
                    if not await self._idle(item.migration, sub):
                        return
                    continue
                if self._busy_since is None:
                    self._busy_since = item.revision
                results = await applier.apply(item.migration, pending)
                self.verifier.record((r.interface for r in pending if r.interface), results)
                if results and not await self.reporter.post(item.migration, results):
                    return

    def on_resumed(self, at: datetime) -> None:
        """The guest resumed here: report it once, whatever step the worker is in
        (it may still be waiting for ports: that is a late landing to measure)."""
        if self._resume_report is None and at >= self.item.migration.created_at:
            self._resume_report = asyncio.create_task(self._report_resume(at))

    async def _report_resume(self, at: datetime) -> None:
        migration_id = self.item.migration.id
        log.info("migration %s: guest resumed here at %s", migration_id, at.isoformat())
        try:
            await self.deps.client.report_resumed(migration_id, at)
        except ClientError as exc:
            log.warning("migration %s: reporting the resume failed: %s", migration_id, exc)

    async def _after_resume(self, migration: Migration) -> bool:
        """Complete a migration this host registered once the guest runs here and
        every vif has its outcome. False when the worker is done."""
        resumed = self.deps.resumes.since(migration.domain_uuid, migration.created_at)
        if resumed is None:
            return True
        self.on_resumed(resumed)
        mine = migration.registered_by == self.deps.settings.host
        if not mine or migration.state not in (MigrationState.APPLIED, MigrationState.FAILED):
            return True
        if self._resume_report is not None:
            await self._resume_report  # the timeline first, then the end
        log.info("migration %s: guest runs here, vifs %s: completing",
                 migration.id, migration.state.value)  # fmt: skip
        try:
            await self.deps.client.complete(migration.id)
        except (NotFound, Conflict) as exc:
            log.info("migration %s: %s", migration.id, exc)
        except ClientError as exc:
            log.warning("migration %s: completing failed: %s", migration.id, exc)
            return True
        return False

    async def _idle(self, migration: Migration, sub: Subscription) -> bool:
        """Wait for an inbox change or a local event; verify the ports when one asks for it.

        False when the broker no longer takes results (stop the worker).
        """
        resumed = self._unchecked_resume is not None or any(e.resumed for e in sub.lifecycle)
        events = []
        if not (resumed and self.verifier.applied):
            first = await sub.get()
            events = [first] if first is not None else []
        events += sub.drain()
        for event in sub.take_lifecycle():
            if event.resumed:
                self._unchecked_resume = event.detail
        if self.stopping or not self.verifier.applied:
            return True  # a resume stays unchecked until something is applied
        why = None
        if self._unchecked_resume is not None:
            why = f"after the guest resumed ({self._unchecked_resume})"
            self._unchecked_resume = None
        elif changed := self.verifier.overwritten(events):
            why = f"after an event on port {changed}"
        if why is None:
            return True
        results = await self.verifier.verify(migration, self.item.interfaces, why)
        return not results or await self.reporter.post(migration, results)
