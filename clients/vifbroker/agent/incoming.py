"""Destination side: one worker per arriving migration, in three steps.

1. :mod:`.applying` waits for the local ports and applies every pending vif
   (a vif is pending when its record's generation has no result yet);
2. :mod:`.reporting` posts the results;
3. :mod:`.verifying`, once nothing is pending, re-reads the applied ports when
   the guest resumes here or a port event shows other data, and re-applies.

The worker holds ONE subscription to its domain's port and lifecycle events for
its whole run; the apply step consumes the events it waited on (they describe
states before its own write), so the idle step sees only later ones.
"""

from __future__ import annotations

import logging

from vifbroker.model import InboxItem, Migration, VifRecord, VifStatus

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
        self.reporter = Reporter(deps.client)
        self.verifier = Verifier(deps.router)
        self._busy_since: int | None = item.revision

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
        with self.subscribe() as sub:
            applier = Applier(self.deps, sub, lambda: self.stopping)
            while not self.stopping:
                item = self.item
                if item.migration.state.terminal:
                    return
                pending = self._pending(item)
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

    async def _idle(self, migration: Migration, sub: Subscription) -> bool:
        """Wait for an inbox change or a local event; verify the ports when one asks for it.

        False when the broker no longer takes results (stop the worker).
        """
        first = await sub.get()
        events = ([first] if first is not None else []) + sub.drain()
        resumed = [e for e in sub.take_lifecycle() if e.resumed]
        if self.stopping or not self.verifier.applied:
            return True
        why = None
        if resumed:
            why = f"after the guest resumed ({resumed[-1].detail})"
        elif changed := self.verifier.overwritten(events):
            why = f"after an event on port {changed}"
        if why is None:
            return True
        results = await self.verifier.verify(migration, self.item.interfaces, why)
        return not results or await self.reporter.post(migration, results)
