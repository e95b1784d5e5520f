"""A record's and a migration's JSON text straight from their stored rows.

The same bytes as ``model/wire.py``'s ``record_json(rows.record(...))`` and
``migration_json(rows.migration(...))`` (tests/store/test_rowtext.py compares
both paths), without the models in between: a vif row's interface column is
already the interface's JSON (pydantic's compact ``exclude_none`` dump less
its port data), so the port data is spliced into it rather than the text
parsed, validated and dumped again. This is what the watch cache renders a new
record with, on the handoff's critical path. Pure: no I/O.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

from vifbroker.model import MigrationState, VifStatus
from vifbroker.model.migration import has_landed
from vifbroker.model.wire import text

from . import rows

_VIRTUALPORT = '"virtualport":{'
_decoder = json.JSONDecoder()
# The stored spelling of each state and status, checked (an enum call costs ~1 us).
_STATUS = {s.value: s.value for s in VifStatus}
_STATE = {s.value: s.value for s in MigrationState}


def interface_text(interface_json: str, portdata: str | None) -> str:
    """``join_interface(interface_json, portdata).model_dump_json(exclude_none=True)``.

    Port data is the last member of ``virtualport`` (after ``parameters``, which
    is always there). ``"virtualport":{`` cannot occur earlier in the text: the
    members before it are strings, and the only object among their values is a
    source's ``address``, whose values are strings; quotes inside a string are
    escaped. The object's end is found by decoding that object alone.
    """
    if portdata is None:
        return interface_json
    start = interface_json.find(_VIRTUALPORT)
    if start < 0:
        # Never stored (port data comes only with a virtualport): the model path.
        iface = rows.join_interface(interface_json, portdata)
        return iface.model_dump_json(exclude_none=True)
    opening = start + len(_VIRTUALPORT) - 1
    _, end = _decoder.raw_decode(interface_json, opening)
    return f'{interface_json[: end - 1]},"portdata":{text(portdata)}{interface_json[end - 1 :]}'


def _nullable(value: str | None) -> str:
    return "null" if value is None else text(value)


@functools.lru_cache(maxsize=4096)
def timestamp(us: int) -> str:
    """A stored time (integer microseconds) as pydantic writes the datetime it reads as."""
    return f'"{rows.from_micros(us).isoformat()[:-6]}Z"'


def _maybe_timestamp(us: int | None) -> str:
    return "null" if us is None else timestamp(us)


def record_text(vif: rows.Row, domain_uuid: str) -> str:
    """``record_json(rows.record(vif, domain_uuid))``."""
    status = _STATUS[vif["status"]]
    return (
        f'{{"domain_uuid":{text(domain_uuid)},"mac":{text(vif["mac"])},'
        f'"generation":{vif["generation"]:d},'
        f'"interface":{interface_text(vif["interface"], vif["portdata"])},'
        f'"result":{{"status":"{status}","applied_generation":{vif["applied_generation"]:d},'
        f'"detail":{_nullable(vif["detail"])},"digest":{_nullable(vif["digest"])}}},'
        f'"revision":{vif["revision"]:d}}}'
    )


def _summary_text(vif: rows.Row) -> str:
    status = _STATUS[vif["status"]]
    return (
        f'{{"mac":{text(vif["mac"])},"generation":{vif["generation"]:d},"status":"{status}",'
        f'"applied_generation":{vif["applied_generation"]:d},"detail":{_nullable(vif["detail"])},'
        f'"uploaded_at":{_maybe_timestamp(vif["uploaded_at"])},'
        f'"applied_at":{_maybe_timestamp(vif["applied_at"])}}}'
    )


def _last_applied(vifs: Sequence[rows.Row]) -> int | None:
    # timeline_of's last landing, from rows
    landed = [
        v["applied_at"]
        for v in vifs
        if has_landed(v["status"], v["generation"], v["applied_generation"], v["applied_at"])
    ]
    return max(landed) if landed else None


def migration_text(row: rows.Row, vifs: Sequence[rows.Row]) -> str:
    """``migration_json(rows.migration(row, vifs))``."""
    if row["resumed_at"] is not None:
        # The timeline then carries a float margin: pydantic writes that one.
        return rows.migration(row, vifs).model_dump_json()
    state = _STATE[row["state"]]
    timeline = (
        f'{{"resumed_at":null,"last_applied_at":{_maybe_timestamp(_last_applied(vifs))},'
        '"margin_seconds":null,"late":null}'
    )
    summaries = ",".join(_summary_text(v) for v in vifs)
    return (
        f'{{"id":{text(row["id"])},"domain_uuid":{text(row["domain_uuid"])},'
        f'"domain_name":{_nullable(row["domain_name"])},'
        f'"source_host":{text(row["source_host"])},'
        f'"destination_host":{text(row["destination_host"])},'
        f'"state":"{state}","on_backend_mismatch":{text(row["on_backend_mismatch"])},'
        f'"created_at":{timestamp(row["created_at"])},'
        f'"updated_at":{timestamp(row["updated_at"])},'
        f'"expires_at":{timestamp(row["expires_at"])},'
        f'"revision":{row["revision"]:d},"interfaces":[{summaries}],'
        f'"registered_by":{_nullable(row["registered_by"])},"timeline":{timeline}}}'
    )
