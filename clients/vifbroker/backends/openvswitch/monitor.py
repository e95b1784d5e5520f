"""Follow Interface rows with ``ovsdb-client monitor`` and turn them into PortEvents.

The monitor asks for the initial rows too (no ``!initial``): the first line
after every (re)start is a full snapshot, diffed against what this monitor
saw before. So a consumer sees every existing port once at the start, and
after an ovsdb-server restart it sees exactly what changed while the monitor
was away (ports gone, PortData changed) instead of a replay of everything.

ovsdb-client prints nothing at start when the table is empty (no initial
line); the diff then happens on the first update. A host with any bridge has
Interface rows (the bridge's own internal port), so this only matters in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ..base import PortEvent
from .rows import Port, PortRow, port_events
from .vsctl import decode_datum

log = logging.getLogger(__name__)


class InterfaceMonitor:
    """One ``ovsdb-client monitor`` at a time, respawned with backoff until closed."""

    def __init__(
        self,
        *,
        binary: str = "ovsdb-client",
        db: str | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        line_limit: int = 256 * 1024 * 1024,
    ) -> None:
        self.binary = binary
        self.db = db
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        # An initial snapshot is one line holding every Interface's external_ids.
        self.line_limit = line_limit
        self._view: dict[str, PortRow] = {}
        self._domains: dict[str, set[str]] = {}  # domain -> uuids of its tagged rows in the view
        #: the view follows a live monitor: it holds a snapshot and every change since
        self.synced = False
        self._proc: asyncio.subprocess.Process | None = None
        self._closed = asyncio.Event()

    def argv(self) -> list[str]:
        server = [self.db] if self.db else []
        return [
            self.binary,
            "monitor",
            *server,
            "Open_vSwitch",
            "Interface",
            "name,external_ids",
            "--format=json",
        ]

    async def events(self) -> AsyncIterator[PortEvent]:
        backoff = self.backoff_initial
        try:
            while not self._closed.is_set():
                fresh = True
                async for line in self._lines():
                    backoff = self.backoff_initial  # connected and talking
                    events = self._handle(line, resync=fresh)
                    self.synced = True
                    fresh = False
                    for event in events:
                        yield event
                self.synced = False
                if self._closed.is_set():
                    return
                log.info("ovsdb-client monitor ended; respawning in %.2fs", backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), backoff)
                backoff = min(backoff * 2, self.backoff_max)
        finally:
            self.synced = False
            await self._kill()

    def rows_of(self, domain: str) -> set[str] | None:
        """UUIDs of the rows the view holds tagged with ``domain``; None while not synced.

        A hint, not an answer: the view trails the database by the monitor's
        delay (a port plugged a moment ago may be missing, one deleted still
        there). Callers read the rows themselves.
        """
        if not self.synced:
            return None
        return set(self._domains.get(domain, ()))

    def ports_of(self, domain: str) -> list[Port] | None:
        """The view's rows of ``domain`` as ports (the same caveat as :meth:`rows_of`)."""
        rows = self.rows_of(domain)
        if rows is None:
            return None
        return [p for u in rows if (p := self._view[u].tagged(u)) is not None]

    async def close(self) -> None:
        self.synced = False
        self._closed.set()
        await self._kill()

    # -- internals -----------------------------------------------------------------
    async def _lines(self) -> AsyncIterator[str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=self.line_limit,
            )
        except OSError as exc:
            log.warning("cannot run %s: %s", self.binary, exc)
            return
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        try:
            while True:
                try:
                    raw = await proc.stdout.readline()
                except ValueError:
                    log.error("ovsdb-client monitor line above %d bytes", self.line_limit)
                    return
                if not raw:
                    break
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    yield line
            # ovsdb-client says one line on its way out (e.g. "receive failed").
            err = (await proc.stderr.read()).decode("utf-8", "replace").strip()
            if err and not self._closed.is_set():
                log.warning("ovsdb-client monitor: %s", err.splitlines()[-1])
        finally:
            await self._kill()

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await asyncio.shield(proc.wait())

    def _handle(self, line: str, *, resync: bool) -> list[PortEvent]:
        try:
            doc = json.loads(line)
            at = {h: i for i, h in enumerate(doc["headings"])}
            # (row uuid, action, name, external_ids) by position: an evacuation's
            # writes come back as thousands of rows, no dict built for each.
            u, a, n, x = at["row"], at["action"], at["name"], at["external_ids"]
            rows: list[_Change] = [(r[u], r[a], r[n], r[x]) for r in doc["data"]]
        except (ValueError, KeyError, TypeError, IndexError):
            log.warning("unparsable ovsdb-client monitor line: %.200s", line)
            return []
        events: list[PortEvent] = []
        if resync:
            snapshot = {r[0]: _row(r) for r in rows if r[1] == "initial"}
            events += self._resync(snapshot)
            rows = [r for r in rows if r[1] != "initial"]
        events += self._apply(rows)
        return events

    def _resync(self, snapshot: dict[str, PortRow]) -> list[PortEvent]:
        events: list[PortEvent] = []
        for uuid in self._view.keys() - snapshot.keys():
            events += port_events(self._view[uuid], None)
        for uuid, row in snapshot.items():
            events += port_events(self._view.get(uuid), row)
        self._view = snapshot
        self._domains = {}
        for uuid, row in snapshot.items():
            self._index(uuid, None, row)
        return events

    def _apply(self, rows: Iterable[_Change]) -> list[PortEvent]:
        events: list[PortEvent] = []
        modified: str | None = None  # "old" names the row, the "new" after it has no uuid
        for r in rows:
            action = r[1]
            uuid = r[0] or modified
            if not uuid:
                continue
            old = self._view.get(uuid)
            if action == "old":
                modified = uuid
                continue
            modified = None
            if action == "delete":
                self._view.pop(uuid, None)
                self._index(uuid, old, None)
                events += port_events(old, None)
            elif action in ("insert", "new", "initial"):
                new = _row(r, fallback=old)
                self._view[uuid] = new
                self._index(uuid, old, new)
                events += port_events(old, new)
        return events

    def _index(self, uuid: str, old: PortRow | None, new: PortRow | None) -> None:
        before = old.port() if old else None
        after = new.port() if new else None
        if before == after:
            return
        if before is not None:
            rows = self._domains.get(before[0])
            if rows is not None:
                rows.discard(uuid)
                if not rows:
                    del self._domains[before[0]]
        if after is not None:
            self._domains.setdefault(after[0], set()).add(uuid)


#: one row of a monitor line: (row uuid, action, name, external_ids); name is null in
#: an "old" row, the uuid empty in the "new" row after it
_Change = tuple[Any, Any, Any, Any]


def _row(r: _Change, fallback: PortRow | None = None) -> PortRow:
    name, ids = r[2], r[3]
    if ids is None:
        external_ids = dict(fallback.external_ids) if fallback else {}
    elif isinstance(ids, list) and ids[0] == "map":
        external_ids = dict(ids[1])  # ["map", [[k, v], ...]]: strings both, as the schema has it
    else:
        external_ids = {str(k): str(v) for k, v in decode_datum(ids).items()}
    return PortRow(
        name=name if isinstance(name, str) else (fallback.name if fallback else ""),
        external_ids=external_ids,
    )
