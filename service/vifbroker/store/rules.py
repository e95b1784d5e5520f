"""Rules every store implements the same way: pure functions, no I/O.

Kept apart from any SQL so the SQLite and PostgreSQL stores cannot drift.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vifbroker.model import (
    TERMINAL_STATES,
    Inbox,
    InboxItem,
    Migration,
    MigrationCreate,
    MigrationState,
    ResultIn,
    VifRecord,
    VifStatus,
    portdata_digest,
)

from .errors import BadCursor, Conflict, InvalidInput, InvalidTransition, TooManyVifs


class Outcome(enum.Enum):
    """Where one vif stands for its migration's state."""

    PENDING = "pending"  # not yet applied at its latest generation
    DONE = "done"  # applied or skipped at its latest generation
    FAILED = "failed"  # failed at its latest generation


def vif_outcome(status: VifStatus, generation: int, applied_generation: int) -> Outcome:
    """The one place that decides what a vif's result means for its migration.

    A result for an older generation counts for nothing: the vif is pending
    again. (A "skipped" under ``on_backend_mismatch: fail`` was already
    recorded as failed by ``apply_result``.)
    """
    if applied_generation != generation:
        return Outcome.PENDING
    if status is VifStatus.FAILED:
        return Outcome.FAILED
    if status in (VifStatus.APPLIED, VifStatus.SKIPPED):
        return Outcome.DONE
    return Outcome.PENDING


@dataclass(slots=True)
class Tally:
    """A migration's vifs counted by outcome, kept with the migration so that
    one upload or result updates its state in O(1), however many vifs it has."""

    total: int = 0
    done: int = 0
    failed: int = 0

    def add(self, outcome: Outcome) -> None:
        self._count(outcome, 1)

    def replace(self, old: Outcome, new: Outcome) -> None:
        if old is not new:  # (a re-upload's pending for pending changes nothing: no calls)
            self._count(old, -1)
            self._count(new, 1)

    def _count(self, outcome: Outcome, delta: int) -> None:
        self.total += delta
        if outcome is Outcome.DONE:
            self.done += delta
        elif outcome is Outcome.FAILED:
            self.failed += delta


def state_of(current: MigrationState, tally: Tally) -> MigrationState:
    """The migration state its vifs imply (terminal states never change here)."""
    if current in TERMINAL_STATES:  # (``current.terminal``, without the property's call)
        return current
    if tally.total == 0:
        return MigrationState.PENDING
    if tally.failed:
        return MigrationState.FAILED
    if tally.done == tally.total:
        return MigrationState.APPLIED
    return MigrationState.UPLOADED


def check_vif_count(total: int, limit: int | None) -> None:
    """An upload may not leave a migration with more than ``limit`` vifs (None: no limit)."""
    if limit is not None and total > limit:
        raise TooManyVifs(f"the migration would hold {total} vifs; at most {limit} are allowed")


def same_request(req: MigrationCreate, stored: MigrationCreate) -> bool:
    """Whether a create with an existing id repeats the stored request."""
    return req.model_dump(exclude={"id"}) == stored.model_dump(exclude={"id"})


def check_transition(current: MigrationState, to: MigrationState) -> bool:
    """True when the move changes something; False for a repeat; raise when refused."""
    if to not in (MigrationState.COMPLETED, MigrationState.CANCELLED, MigrationState.EXPIRED):
        raise InvalidTransition(f"cannot move a migration to {to.value}")
    if current == to:
        return False
    if current.terminal:
        raise InvalidTransition(f"migration is already {current.value}")
    return True


def check_unique_macs(macs: Sequence[str]) -> None:
    """An upload or a result list names each vif once (the only place this is checked)."""
    seen: set[str] = set()
    for mac in macs:
        if mac in seen:
            raise InvalidInput(f"MAC {mac} appears more than once")
        seen.add(mac)


@dataclass(frozen=True, slots=True)
class ResultUpdate:
    """What a posted result does to one stored vif (None fields: unchanged)."""

    status: VifStatus
    applied_generation: int
    detail: str | None
    digest: str | None


def apply_result(
    result: ResultIn, generation: int, portdata: str | None, on_backend_mismatch: str = "skip"
) -> ResultUpdate | None:
    """Decide how ``result`` changes a vif now at ``generation`` holding ``portdata``.

    A result for an older generation changes nothing (None): the destination
    applied data that has since been superseded. A digest that does not match
    what was uploaded turns "applied" into "failed": the bytes did not survive.
    A "skipped" (the destination has no backend for the vif; the agent reports
    it as it is) becomes "failed" when the migration asked for
    ``on_backend_mismatch: fail`` — decided here only.
    """
    if result.generation > generation:
        raise InvalidInput(
            f"result for {result.mac} names generation {result.generation}, "
            f"but the latest is {generation}"
        )
    if result.generation < generation:
        return None
    status = VifStatus(result.status)
    detail = result.detail
    if (
        status is VifStatus.APPLIED
        and result.digest is not None
        and result.digest != portdata_digest(portdata)
    ):
        status = VifStatus.FAILED
        detail = "digest mismatch: the destination read back other port data than was uploaded"
    if status is VifStatus.SKIPPED and on_backend_mismatch == "fail":
        status = VifStatus.FAILED
    return ResultUpdate(status, result.generation, detail, result.digest)


def ensure_active(state: MigrationState, what: str) -> None:
    if state.terminal:
        raise Conflict(f"cannot {what}: migration is {state.value}")


def keys_for(m: Migration) -> set[str]:
    """Hub keys that a change to ``m`` wakes (see Store's docstring)."""
    return hub_keys(m.id, m.domain_uuid, m.source_host, m.destination_host)


def hub_keys(migration_id: str, domain_uuid: str, source: str, destination: str) -> set[str]:
    return {
        f"migration:{migration_id}",
        f"host:{source}",
        f"host:{destination}",
        f"domain:{domain_uuid}",
    }


_DIRECTIONS = ("incoming", "outgoing")  # as destination, as source


def inbox(
    host: str,
    after: int,
    page: Sequence[tuple[Migration, list[VifRecord]]],
    truncated: bool,
    current: int,
) -> Inbox:
    """The inbox answer for ``page`` (migrations changed after ``after``, by revision).

    Shared by the SQL query and the watch cache so they cannot drift: an item
    per direction in which ``host`` takes part; a truncated page resumes after
    its last item, a complete one at the current revision.
    """
    items = []
    for mig, recs in page:
        for direction in directions(host, mig.source_host, mig.destination_host):
            item = InboxItem(
                revision=mig.revision, direction=direction, migration=mig, interfaces=recs
            )
            items.append(item)
    last = page[-1][0].revision if page else after
    return Inbox(revision=inbox_revision(after, last, truncated, current), items=items)


def directions(host: str, source_host: str, destination_host: str) -> list[str]:
    """The inbox items a migration gives ``host``: one per direction it takes part in."""
    # (no comprehension: a call of its own, on every inbox answer)
    found = []
    if destination_host == host:
        found.append(_DIRECTIONS[0])
    if source_host == host:
        found.append(_DIRECTIONS[1])
    return found


def inbox_revision(after: int, last: int, truncated: bool, current: int) -> int:
    """Where the next poll resumes: after the last item of a truncated page (at
    revision ``last``), else at the current revision."""
    return last if truncated else max(current, after)


def parse_cursor(cursor: str | None) -> int:
    """The list position a cursor names (newest first: the seq of the last row handed out)."""
    if cursor is None:
        return 2**63 - 1
    # ASCII digits only: int() would also take "٣", "1_0" and " 3".
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19):
        raise BadCursor("bad cursor")
    return int(cursor)


def landed_at(old: Mapping[str, Any], update: ResultUpdate, reported: datetime) -> int | None:
    """The vif's ``applied_at`` (µs) after ``update``: when its generation first landed.

    A re-apply of the same generation (the destination found it overwritten)
    keeps the first landing: the timeline is about when the data was there.
    """
    if update.status is not VifStatus.APPLIED:
        return None
    same = (
        old["status"] == VifStatus.APPLIED.value
        and old["applied_generation"] == update.applied_generation
        and old["applied_at"] is not None
    )
    return int(old["applied_at"]) if same else int(reported.timestamp() * 1_000_000)
