"""A watch cache for the SQLite store's inbox (like the Kubernetes apiserver's).

A long-poll woken by a commit used to hop to the reader thread and query what
the writer had just held in its hands. Instead, each write operation reports
what it changed (the migration as committed and its vif rows); once the batch
is durable the engine hands those reports here, in revision order, and
``inbox(host, after)`` answers from memory for any ``after >= floor``.

The log is bounded by entries and by stored bytes; evicting an entry raises
the floor to its revision, below which only SQL can answer. A new cache (a
restarted store) starts empty with floor = the current revision. Nothing is
added before its commit returned, so nothing here is ever not yet durable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vifbroker.model import Inbox, Migration, VifRecord

from . import rules
from . import sqlite_rows as rows

# Woken long-polls read the newest few entries; what lags further goes to SQL.
DEFAULT_MAX_ENTRIES = 1024
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


@dataclass(slots=True, eq=False)  # not frozen: its __init__ is cheaper, on every write
class Change:
    """A migration's row as committed at ``revision``, with its vif rows.

    Plain rows, not models: dicts of strings and numbers are invisible to the
    cyclic GC, while thousands of retained pydantic models made every full
    collection slower (bench_upload lost ~15 %). Models are built per read.
    """

    revision: int
    id: str
    hosts: tuple[str, ...]  # source, and destination when it differs
    row: Mapping[str, Any]
    vifs: tuple[Mapping[str, Any], ...]
    size: int

    def migration(self) -> Migration:
        return rows.migration(self.row, self.vifs)

    def records(self) -> list[VifRecord]:
        domain = self.row["domain_uuid"]
        return [rows.record(v, domain) for v in self.vifs]


def change(row: rows.Row, vifs: Iterable[rows.Row]) -> Change:
    """Snapshot ``row`` and ``vifs`` (as committed) for the cache."""
    row = row if isinstance(row, dict) else dict(row)
    frozen = tuple(v if isinstance(v, dict) else dict(v) for v in vifs)
    size = 256 + sum(len(v["interface"]) + len(v["portdata"] or "") for v in frozen)
    src, dst = row["source_host"], row["destination_host"]
    hosts = (src,) if src == dst else (src, dst)
    return Change(row["revision"], row["id"], hosts, row, frozen, size)


@dataclass(frozen=True, slots=True)
class Pruned:
    """Migrations deleted outright (no revision): they leave the cache too."""

    ids: frozenset[str]


Event = Change | Pruned


class WatchCache:
    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.floor = 0
        self.revision = 0
        self._log: deque[Change] = deque()
        self._by_host: dict[str, deque[Change]] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._log)

    def reset(self, revision: int) -> None:
        """Forget everything; answer only for ``after >= revision`` from now on."""
        self.floor = self.revision = revision
        self._log.clear()
        self._by_host.clear()
        self._bytes = 0

    def apply(self, revision: int, events: Iterable[Event]) -> None:
        """Take a durable batch's events (in the order its operations ran)."""
        for event in events:
            if isinstance(event, Pruned):
                self._drop(event.ids)
                continue
            self._log.append(event)
            self._bytes += event.size
            for host in event.hosts:
                self._by_host.setdefault(host, deque()).append(event)
        self.revision = max(self.revision, revision)
        while self._log and (len(self._log) > self.max_entries or self._bytes > self.max_bytes):
            self._evict()

    def inbox(self, host: str, after: int, limit: int) -> Inbox | None:
        """The same answer as the SQL inbox, or None when ``after`` is below the floor."""
        if after < self.floor or limit < 1:
            return None
        # Newest first until ``after``: a reader at the head touches only what is new.
        # A migration's latest change carries its current revision (all later ones
        # are here), so keeping only the latest per id gives SQL's rows.
        seen: set[str] = set()
        newest_first: list[Change] = []
        for entry in reversed(self._by_host.get(host, ())):
            if entry.revision <= after:
                break
            if entry.id not in seen:
                seen.add(entry.id)
                newest_first.append(entry)
        found = newest_first[::-1][: limit + 1]
        page = [(e.migration(), e.records()) for e in found[:limit]]
        return rules.inbox(host, after, page, len(found) > limit, self.revision)

    def _evict(self) -> None:
        old = self._log.popleft()
        self._bytes -= old.size
        self.floor = max(self.floor, old.revision)
        for host in old.hosts:
            per_host = self._by_host[host]
            # The globally oldest entry is the oldest of each of its hosts.
            assert per_host[0] is old
            per_host.popleft()
            if not per_host:
                del self._by_host[host]

    def _drop(self, ids: frozenset[str]) -> None:
        if not ids:
            return
        kept = [e for e in self._log if e.id not in ids]
        self._log = deque()
        self._by_host = {}
        self._bytes = 0
        self.apply(self.revision, kept)
