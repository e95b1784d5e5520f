"""Stored rows <-> models, and what a write does to rows: pure, shared by every store.

A row is a mapping of column name to value, the same columns in SQLite and
PostgreSQL (times as integer microseconds, the interface as JSON without its
port data, the port data in a column of its own so purging it is one UPDATE).
Rows were validated on the way in, so models are built from them with
``model_construct`` (no re-validation): it is most of the cost of a write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from vifbroker.model import (
    BackendInfo,
    Host,
    Interface,
    Migration,
    MigrationCreate,
    MigrationState,
    ResultIn,
    VifRecord,
    VifResult,
    VifStatus,
    VifSummary,
    timeline_of,
)

from .base import Parties, Prior, Uploaded
from .errors import InvalidInput, NoActiveMigration, PreconditionFailed, WrongHost
from .rules import Outcome, Tally, apply_result, check_vif_count, landed_at, state_of, vif_outcome

#: Enum members by their stored value: a dict lookup where the enum's own
#: constructor costs ~0.6 us a call (three of them on every upload).
_STATE = {state.value: state for state in MigrationState}
#: ... and back: a member's ``.value`` is two Python calls (enum's property).
_STATE_VALUE = {state: state.value for state in MigrationState}
_STATUS = {status.value: status for status in VifStatus}
_PENDING = VifStatus.PENDING.value


def to_micros(dt: datetime) -> int:
    return int(dt.timestamp() * 1_000_000)


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


_PORTDATA = {"virtualport": {"portdata"}}


def split_interface(iface: Interface) -> tuple[str, str | None]:
    """Store port data in its own column so purging it is one UPDATE."""
    # The same text as ``iface.without_portdata()`` dumped, without its two copies.
    return iface.model_dump_json(exclude_none=True, exclude=_PORTDATA), iface.portdata


def join_interface(interface_json: str, portdata: str | None) -> Interface:
    iface = Interface.model_validate_json(interface_json)
    return iface.with_portdata(portdata) if portdata is not None else iface


class Row(Protocol):
    """A row as any driver gives it: sqlite3.Row, asyncpg.Record, or a dict."""

    def keys(self) -> Iterable[str]: ...

    def __getitem__(self, key: str, /) -> Any: ...


RowDict = dict[str, Any]
#: the columns of a migration that make its Parties (``parties``)
PARTIES = "id, source_host, destination_host, registered_by"


def parties(row: Row) -> Parties:
    """Who takes part in the migration of ``row`` (a whole row, or its ``PARTIES``)."""
    return Parties(row["id"], row["source_host"], row["destination_host"], row["registered_by"])


def outcome(vif: Row) -> Outcome:
    return vif_outcome(_STATUS[vif["status"]], vif["generation"], vif["applied_generation"])


def tally(migration: Row) -> Tally:
    """The vif counts kept on a migration row."""
    return Tally(migration["vif_count"], migration["vifs_done"], migration["vifs_failed"])


def maybe_micros(us: int | None) -> datetime | None:
    return None if us is None else from_micros(us)


def summary(row: Row) -> VifSummary:
    return VifSummary.model_construct(
        mac=row["mac"],
        generation=row["generation"],
        status=_STATUS[row["status"]],
        applied_generation=row["applied_generation"],
        detail=row["detail"],
        uploaded_at=maybe_micros(row["uploaded_at"]),
        applied_at=maybe_micros(row["applied_at"]),
    )


def record(row: Row, domain_uuid: str, interface: Interface | None = None) -> VifRecord:
    """The record of a vif row; pass ``interface`` when it is at hand to skip parsing."""
    return VifRecord.model_construct(
        domain_uuid=domain_uuid,
        mac=row["mac"],
        generation=row["generation"],
        interface=interface or join_interface(row["interface"], row["portdata"]),
        result=VifResult.model_construct(
            status=_STATUS[row["status"]],
            applied_generation=row["applied_generation"],
            detail=row["detail"],
            digest=row["digest"],
        ),
        revision=row["revision"],
    )


def migration(row: Row, vifs: Iterable[Row]) -> Migration:
    summaries = [summary(v) for v in vifs]
    return Migration.model_construct(
        id=row["id"],
        domain_uuid=row["domain_uuid"],
        domain_name=row["domain_name"],
        source_host=row["source_host"],
        destination_host=row["destination_host"],
        state=_STATE[row["state"]],
        on_backend_mismatch=row["on_backend_mismatch"],
        created_at=from_micros(row["created_at"]),
        updated_at=from_micros(row["updated_at"]),
        expires_at=from_micros(row["expires_at"]),
        revision=row["revision"],
        interfaces=summaries,
        registered_by=row["registered_by"],
        timeline=timeline_of(summaries, maybe_micros(row["resumed_at"])),
    )


def host(row: Row) -> Host:
    return Host(
        name=row["name"],
        last_seen=from_micros(row["last_seen"]),
        agent_version=row["agent_version"],
        backends=[BackendInfo.model_validate(b) for b in json.loads(row["backends"])],
        running_domains=json.loads(row["running_domains"]),
    )


def plan_upload(
    migration: Row,
    stored: Mapping[str, Row],
    interfaces: Sequence[Interface],
    if_match: Mapping[str, int] | None,
    revision: int,
    now: datetime,
    max_vifs: int | None = None,
) -> tuple[list[RowDict], Tally]:
    """The vif rows an upload writes (a new generation each) and the migration's new counts.

    ``stored`` holds the migration's current rows of the named vifs only; a
    stale ``if_match`` (0 = must not exist yet) is PreconditionFailed; more
    than ``max_vifs`` vifs in the migration afterwards is TooManyVifs.
    """
    if if_match:
        for mac, expected in if_match.items():
            have = stored[mac]["generation"] if mac in stored else 0
            if have != expected:
                raise PreconditionFailed(
                    f"{mac} is at generation {have}, not {expected}",
                    mac=mac,
                    current_generation=have,
                )
    counts = tally(migration)
    new = 0
    for iface in interfaces:
        new += iface.mac not in stored
    check_vif_count(counts.total + new, max_vifs)
    written: list[RowDict] = []
    migration_id, uploaded_at = migration["id"], to_micros(now)
    for iface in interfaces:
        iface_json, portdata = split_interface(iface)
        old = stored.get(iface.mac)
        written.append(
            {
                "migration_id": migration_id,
                "mac": iface.mac,
                "position": old["position"] if old else counts.total,
                "generation": old["generation"] + 1 if old else 1,
                "interface": iface_json,
                "portdata": portdata,
                "status": _PENDING,
                "applied_generation": old["applied_generation"] if old else 0,
                "detail": None,
                "digest": None,
                "revision": revision,
                "uploaded_at": uploaded_at,
                "applied_at": old["applied_at"] if old else None,
            }
        )
        if old is None:
            counts.add(Outcome.PENDING)
        else:
            counts.replace(outcome(old), Outcome.PENDING)
    return written, counts


#: By domain: its active migration's row and the stored vifs a group of uploads names.
HeldUploads = Mapping[str, tuple[RowDict, dict[str, RowDict]]]


def upload_target(held: HeldUploads, call: Mapping[str, Any]) -> tuple[RowDict, dict[str, RowDict]]:
    """The migration row and stored vifs one upload of a group works on; an upload
    without an active migration, or from another host than its source, raises."""
    domain_uuid = call["domain_uuid"]
    if domain_uuid not in held:
        raise NoActiveMigration(f"domain {domain_uuid} has no active migration")
    migration, stored = held[domain_uuid]
    source_host = call["source_host"]
    if source_host is not None and migration["source_host"] != source_host:
        raise WrongHost(f"{source_host} is not the source host of {migration['id']}")
    return migration, stored


def take_upload(
    migration: RowDict, stored: dict[str, RowDict], call: Mapping[str, Any], rev: int
) -> tuple[list[RowDict], Uploaded]:
    """Plan one upload of a group at revision ``rev`` (a refusal raises and changes
    nothing), then settle its migration and keep its vifs in ``stored`` for the
    uploads after it: the vif rows to write, and the answer."""
    vifs, counts = plan_upload(
        migration, stored, call["interfaces"], call["if_match"], rev, call["now"], call["max_vifs"]
    )
    settle(migration, counts, rev, call["now"])
    for vif in vifs:
        stored[vif["mac"]] = vif
    generations = [(v["mac"], v["generation"]) for v in vifs]
    return vifs, Uploaded(migration["id"], _STATE[migration["state"]], rev, generations)


def plan_results(
    migration: Row,
    stored: Mapping[str, Row],
    results: Sequence[ResultIn],
    now: datetime,
) -> tuple[list[RowDict], Tally, dict[str, Prior]]:
    """The vif rows the destination's results change (revision still to set), the
    counts, and how each vif written stood before."""
    counts = tally(migration)
    written: list[RowDict] = []
    prior: dict[str, Prior] = {}
    for res in results:
        old = stored.get(res.mac)
        if old is None:
            raise InvalidInput(f"migration {migration['id']} has no interface {res.mac}")
        update = apply_result(
            res, old["generation"], old["portdata"], migration["on_backend_mismatch"]
        )
        if update is None:
            continue
        new = dict(old) | {
            "status": update.status.value,
            "applied_generation": update.applied_generation,
            "detail": update.detail,
            "digest": update.digest,
            "applied_at": landed_at(dict(old), update, res.applied_at or now),
        }
        counts.replace(outcome(old), outcome(new))
        written.append(new)
        prior[res.mac] = Prior(
            _STATUS[old["status"]], old["applied_generation"], maybe_micros(old["applied_at"])
        )
    return written, counts, prior


def settle(migration: RowDict, counts: Tally, revision: int, now: datetime) -> None:
    """Set on ``migration`` the counts, the state they imply, the time and revision of a change."""
    migration.update(
        state=_STATE_VALUE[state_of(_STATE[migration["state"]], counts)],
        updated_at=to_micros(now),
        revision=revision,
        vif_count=counts.total,
        vifs_done=counts.done,
        vifs_failed=counts.failed,
    )


def new_migration(
    req: MigrationCreate, mid: str, now: datetime, revision: int, registered_by: str | None
) -> RowDict:
    """The row of a migration just created (``req.source_host`` already resolved)."""
    if req.source_host is None:
        raise InvalidInput("source_host is required")
    t = to_micros(now)
    return {
        "id": mid,
        "domain_uuid": req.domain_uuid,
        "domain_name": req.domain_name,
        "source_host": req.source_host,
        "destination_host": req.destination_host,
        "state": MigrationState.PENDING.value,
        "on_backend_mismatch": req.on_backend_mismatch,
        "ttl_seconds": req.ttl_seconds,
        "created_at": t,
        "updated_at": t,
        "expires_at": to_micros(now + timedelta(seconds=req.ttl_seconds)),
        "revision": revision,
        "vif_count": 0,
        "vifs_done": 0,
        "vifs_failed": 0,
        "resumed_at": None,
        "registered_by": registered_by,
    }


def stored_request(row: Row) -> MigrationCreate:
    """The create request a stored migration answered (to compare a repeat with)."""
    return MigrationCreate(
        domain_uuid=row["domain_uuid"],
        source_host=row["source_host"],
        destination_host=row["destination_host"],
        domain_name=row["domain_name"],
        ttl_seconds=row["ttl_seconds"],
        on_backend_mismatch=row["on_backend_mismatch"],
    )
