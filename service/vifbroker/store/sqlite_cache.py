"""A watch cache for the SQLite store's inbox (like the Kubernetes apiserver's).

A long-poll woken by a commit would hop to the reader thread and query what
the writer had just held in its hands. Instead, each write operation reports
what it changed (a ``Change``: the migration row as committed and the vif rows
it wrote); once the batch is durable the engine hands those reports here, in
revision order, and ``inbox(host, after)`` answers from memory for any
``after >= floor``.

The cache keeps a log of which migration changed at which revision, and each
logged migration's current rows. A change carries only the vifs it wrote, so
an upload costs the same however many vifs its migration has; a writer sends
every vif (``full``) of a migration the cache does not hold (``holds``).

Answers are built in wire form (``page``): each held migration keeps the JSON
text of its records and of itself once rendered, keyed by the row it came
from, so a change is rendered once however many hosts and polls hand it out
(an evacuation hands each change to both hosts). The text is not counted in
the byte bound; it is about as large as the rows it renders.

The log is bounded by entries and by stored bytes; evicting an entry raises
the floor to its revision, below which only SQL can answer, and a migration
leaves the cache with its last entry. A new cache (a restarted store) starts
empty with floor = the current revision. Nothing is added before its commit
returned, so nothing here is ever not yet durable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vifbroker.model import TERMINAL_STATES, Inbox, Migration
from vifbroker.model.wire import InboxPage, item_json

from . import rows, rowtext, rules
from .hub import ChangeHub

# Woken long-polls read the newest few entries; what lags further goes to SQL.
DEFAULT_MAX_ENTRIES = 1024
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
_ENTRY_BYTES = 64

RowDict = dict[str, Any]
Texts = dict[str, tuple[Mapping[str, Any], int, str]]


@dataclass(frozen=True, slots=True)
class Change:
    """One write to one migration: its row as committed, the vif rows written.

    Plain rows, not models: dicts of strings and numbers are invisible to the
    cyclic GC, while thousands of retained pydantic models made every full
    collection slower. Models are built per read.
    """

    row: Mapping[str, Any]
    vifs: tuple[RowDict, ...]
    full: bool  # ``vifs`` is every vif of the migration


@dataclass(frozen=True, slots=True)
class Pruned:
    """Migrations deleted outright (no revision): they leave the cache too."""

    ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class Foreign:
    """Another connection wrote to the file: what the cache holds may be stale."""


Event = Change | Pruned | Foreign


def change(row: Mapping[str, Any], vifs: Iterable[rows.Row], *, full: bool) -> Change:
    """Snapshot ``row`` and ``vifs`` (as committed) for the cache."""
    snapshot = []  # (a loop, not a generator: a handoff's change has one vif)
    for v in vifs:
        snapshot.append(v if isinstance(v, dict) else dict(v))
    return Change(row if isinstance(row, dict) else dict(row), tuple(snapshot), full)


def _size(vif: Mapping[str, Any]) -> int:
    return 128 + len(vif["interface"]) + len(vif["portdata"] or "")


@dataclass(slots=True, eq=False)
class _Held:
    """A migration as the cache holds it: current rows, and how many log entries name it."""

    row: Mapping[str, Any]
    vifs: dict[str, RowDict] = field(default_factory=dict)  # by MAC, in upload order
    complete: bool = True
    size: int = 256
    entries: int = 0
    #: JSON text rendered from rows: MAC (or "" for the migration) -> (the row, its
    #: revision, its text). Used only while that row at that revision is the one
    #: held, so a page built in a thread while the loop takes a change never
    #: hands out a stale text.
    texts: Texts = field(default_factory=dict)

    def take(self, change: Change) -> int:
        """Apply ``change``; the change in bytes held."""
        before = self.size
        self.row = change.row
        self.texts.pop("", None)
        for vif in change.vifs:
            old = self.vifs.get(vif["mac"])
            if old is not None:
                self.size -= _size(old)
                self.texts.pop(vif["mac"], None)
            self.vifs[vif["mac"]] = vif
            self.size += _size(vif)
        return self.size - before


@dataclass(frozen=True, slots=True)
class Held:
    """A snapshot of one held migration, for building an inbox answer."""

    row: Mapping[str, Any]
    vifs: tuple[RowDict, ...]
    size: int
    texts: Texts

    def unrendered(self) -> int:
        """Bytes of rows whose text is still to be rendered (what a page costs)."""
        todo = sum(_size(v) for v in self.vifs if self._memo(v["mac"], v) is None)
        return todo + (0 if self._memo("", self.row) is not None else 256)

    def migration_text(self) -> str:
        row = self.row
        text = self._memo("", row)
        if text is None:
            text = self._keep("", row, rowtext.migration_text(row, self.vifs))
        return text

    def record_texts(self) -> list[str]:
        # (a loop and no render callables: a handoff's page renders one record)
        domain, found = self.row["domain_uuid"], []
        for v in self.vifs:
            text = self._memo(v["mac"], v)
            if text is None:
                text = self._keep(v["mac"], v, rowtext.record_text(v, domain))
            found.append(text)
        return found

    def _memo(self, key: str, row: Mapping[str, Any]) -> str | None:
        """The text kept for ``key`` when rendered from ``row`` at its revision, else None."""
        memo = self.texts.get(key)
        if memo is not None and memo[0] is row and memo[1] == row["revision"]:
            return memo[2]
        return None

    def _keep(self, key: str, row: Mapping[str, Any], text: str) -> str:
        """Keep ``text``, rendered from ``row``, for ``_memo``; hand it back."""
        self.texts[key] = (row, row["revision"], text)
        return text


def answer(host: str, after: int, limit: int, found: list[Held], revision: int) -> Inbox:
    """The inbox answer from :meth:`WatchCache.select`'s snapshots (models built here)."""
    page = []
    for held in found[:limit]:
        domain = held.row["domain_uuid"]
        page.append(
            (rows.migration(held.row, held.vifs), [rows.record(v, domain) for v in held.vifs])
        )
    return rules.inbox(host, after, page, len(found) > limit, revision)


def page(host: str, after: int, limit: int, found: list[Held], revision: int) -> InboxPage:
    """:func:`answer` in wire form, from the texts each snapshot holds (rendered
    here, once per row, when missing)."""
    items: list[str] = []
    for held in found[:limit]:
        row = held.row
        names = rules.directions(host, row["source_host"], row["destination_host"])
        if not names:
            continue
        migration, records = held.migration_text(), held.record_texts()
        for d in names:
            items.append(item_json(row["revision"], d, migration, records))
    last = found[: limit][-1].row["revision"] if found else after
    return InboxPage(rules.inbox_revision(after, last, len(found) > limit, revision), items)


@dataclass(frozen=True, slots=True)
class _Entry:
    revision: int
    id: str
    hosts: tuple[str, ...]  # source, and destination when it differs


class WatchCache:
    def __init__(
        self,
        hub: ChangeHub,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.floor = 0
        self._hub = hub  # the current revision lives there, nowhere else
        self._log: deque[_Entry] = deque()
        self._by_host: dict[str, deque[_Entry]] = {}
        self._held: dict[str, _Held] = {}
        self._active: dict[str, str] = {}  # domain -> its held migration, while active
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._log)

    @property
    def revision(self) -> int:
        return self._hub.revision

    def holds(self, migration_id: str) -> bool:
        """Whether a change to this migration may carry only the vifs it wrote.

        Read by the writer thread while a batch runs; the cache changes only
        between batches (``apply`` runs on the loop after the commit).
        """
        held = self._held.get(migration_id)
        return held is not None and held.complete

    def active(self, domain_uuid: str) -> tuple[Mapping[str, Any], Mapping[str, RowDict]] | None:
        """The row and vifs (by MAC) of the domain's active migration as committed,
        when held whole (None: only SQL can tell). Read by a batch as ``holds`` is;
        the caller copies what it changes."""
        mid = self._active.get(domain_uuid)
        return None if mid is None else self.rows_of(mid)

    def rows_of(self, migration_id: str) -> tuple[Mapping[str, Any], Mapping[str, RowDict]] | None:
        """The row and vifs (by MAC, in upload order) of a migration as committed,
        when held whole (None: only SQL can tell); read as ``active``'s are."""
        held = self._held.get(migration_id)
        if held is None or not held.complete:
            return None
        return held.row, held.vifs

    def reset(self, revision: int) -> None:
        """Forget everything; answer only for ``after >= revision`` from now on."""
        self.floor = revision
        self._log.clear()
        self._by_host.clear()
        self._held.clear()
        self._active.clear()
        self._bytes = 0

    def apply(self, events: Iterable[Event]) -> None:
        """Take a durable batch's events (in the order its operations ran)."""
        for event in events:
            if isinstance(event, Pruned):
                self._drop(event.ids)
            elif isinstance(event, Foreign):
                self.reset(self.revision)
            else:
                self._add(event)
        while self._log and (len(self._log) > self.max_entries or self._bytes > self.max_bytes):
            self._evict()

    def _add(self, change: Change) -> None:
        mid = change.row["id"]
        held = self._held.get(mid)
        if held is None or change.full:
            entries = held.entries if held is not None else 0
            if held is not None:
                self._bytes -= held.size
            # A partial change of a migration not held: its other vifs are
            # unknown here, so reads that need it go to SQL until it leaves.
            held = self._held[mid] = _Held(change.row, complete=change.full, entries=entries)
            self._bytes += held.size
        self._bytes += held.take(change) + _ENTRY_BYTES
        held.entries += 1
        domain = change.row["domain_uuid"]
        if change.row["state"] not in TERMINAL_STATES:  # a StrEnum: its values match
            self._active[domain] = mid
        elif self._active.get(domain) == mid:
            del self._active[domain]
        src, dst = change.row["source_host"], change.row["destination_host"]
        entry = _Entry(change.row["revision"], mid, (src,) if src == dst else (src, dst))
        self._log.append(entry)
        for host in entry.hosts:
            self._by_host.setdefault(host, deque()).append(entry)

    def events(self, after: int, limit: int) -> list[Held] | None:
        """Snapshots of the migrations changed after ``after``, by revision (``limit``
        at most), or None when only SQL can give them."""
        found = self.select(None, after, limit)
        return None if found is None else found[:limit]

    def held(self) -> list[str]:
        """The ids of the migrations held now."""
        return list(self._held)

    def migration(self, migration_id: str) -> Migration | None:
        """The migration as SQL would read it, when held (None: only SQL can tell)."""
        found = self.rows_of(migration_id)
        return None if found is None else rows.migration(found[0], found[1].values())

    def inbox(self, host: str, after: int, limit: int) -> Inbox | None:
        """The same answer as the SQL inbox, or None when only SQL can give it."""
        found = self.select(host, after, limit)
        return None if found is None else answer(host, after, limit, found, self.revision)

    def select(self, host: str | None, after: int, limit: int) -> list[Held] | None:
        """Snapshots of what the inbox answer holds (``limit`` + 1 at most), or
        None when only SQL can give it. ``answer`` builds the models from them,
        on any thread: later changes to the cache do not touch a snapshot.
        ``host`` None: every host's (the event stream's migrations)."""
        if after < self.floor or limit < 1:
            return None
        # Newest first until ``after``: a reader at the head touches only what is new.
        # The held rows are each migration's latest, as SQL's are; the latest
        # entry of a migration carries that revision.
        seen: set[str] = set()
        newest_first: list[_Held] = []
        log = self._log if host is None else self._by_host.get(host, ())
        for entry in reversed(log):
            if entry.revision <= after:
                break
            if entry.id not in seen:
                seen.add(entry.id)
                newest_first.append(self._held[entry.id])
        snapshots = []  # (a loop: the calls of a generator and a comprehension saved)
        for h in newest_first[::-1][: limit + 1]:
            if not h.complete:
                return None
            snapshots.append(Held(h.row, tuple(h.vifs.values()), h.size, h.texts))
        return snapshots

    def _evict(self) -> None:
        old = self._log.popleft()
        self._bytes -= _ENTRY_BYTES
        self.floor = max(self.floor, old.revision)
        for host in old.hosts:
            per_host = self._by_host[host]
            # The globally oldest entry is the oldest of each of its hosts.
            assert per_host[0] is old
            per_host.popleft()
            if not per_host:
                del self._by_host[host]
        held = self._held[old.id]
        held.entries -= 1
        if held.entries == 0:
            self._forget(old.id)
            self._bytes -= held.size

    def _drop(self, ids: frozenset[str]) -> None:
        if not ids:
            return
        for mid in ids:
            held = self._forget(mid)
            if held is not None:
                self._bytes -= held.size + held.entries * _ENTRY_BYTES
        self._log = deque(e for e in self._log if e.id not in ids)
        self._by_host = {}
        for entry in self._log:
            for host in entry.hosts:
                self._by_host.setdefault(host, deque()).append(entry)

    def _forget(self, mid: str) -> _Held | None:
        held = self._held.pop(mid, None)
        if held is not None and self._active.get(held.row["domain_uuid"]) == mid:
            del self._active[held.row["domain_uuid"]]
        return held
