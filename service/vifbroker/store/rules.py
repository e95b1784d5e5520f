"""Rules every store implements the same way: pure functions, no I/O.

Kept apart from any SQL so the SQLite and PostgreSQL stores cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vifbroker.model import (
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

from .errors import Conflict, InvalidInput, InvalidTransition


@dataclass(frozen=True, slots=True)
class VifRow:
    """The parts of a stored vif that decide the migration's state."""

    mac: str
    generation: int
    status: VifStatus
    applied_generation: int


def derive_state(current: MigrationState, vifs: Iterable[VifRow]) -> MigrationState:
    """The migration state implied by its vifs (terminal states never change here)."""
    if current.terminal:
        return current
    rows = list(vifs)
    if not rows:
        return MigrationState.PENDING
    done = True
    for row in rows:
        at_latest = row.applied_generation == row.generation
        if row.status is VifStatus.FAILED and at_latest:
            return MigrationState.FAILED
        if not (at_latest and row.status in (VifStatus.APPLIED, VifStatus.SKIPPED)):
            done = False
    return MigrationState.APPLIED if done else MigrationState.UPLOADED


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
    return {
        f"migration:{m.id}",
        f"host:{m.source_host}",
        f"host:{m.destination_host}",
        f"domain:{m.domain_uuid}",
    }


_DIRECTIONS = (("incoming", "destination_host"), ("outgoing", "source_host"))


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
        for direction, side in _DIRECTIONS:
            if getattr(mig, side) == host:
                items.append(
                    InboxItem(
                        revision=mig.revision, direction=direction, migration=mig, interfaces=recs
                    )
                )
    revision = page[-1][0].revision if truncated else max(current, after)
    return Inbox(revision=revision, items=items)
