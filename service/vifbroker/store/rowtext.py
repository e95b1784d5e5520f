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
from collections.abc import Callable, Sequence

from vifbroker.model import MigrationState, VifStatus
from vifbroker.model.migration import has_landed
from vifbroker.model.wire import text

from . import rows

_VIRTUALPORT = '"virtualport":{'
# The decoder's scanner itself (``raw_decode`` is a Python wrapper around it).
_scan: Callable[[str, int], tuple[object, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
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
    _, end = _scan(interface_json, opening)
    return f'{interface_json[: end - 1]},"portdata":{text(portdata)}{interface_json[end - 1 :]}'


@functools.lru_cache(maxsize=4096)
def timestamp(us: int) -> str:
    """A stored time (integer microseconds) as pydantic writes the datetime it reads as."""
    return f'"{rows.from_micros(us).isoformat()[:-6]}Z"'


# (On the handoff's critical path, a call is a cost of its own: a null or a
# value is chosen inline below, never by a helper.)
_NULL = "null"


def record_text(vif: rows.Row, domain_uuid: str) -> str:
    """``record_json(rows.record(vif, domain_uuid))``."""
    detail, digest = vif["detail"], vif["digest"]
    return (
        f'{{"domain_uuid":{text(domain_uuid)},"mac":{text(vif["mac"])},'
        f'"generation":{vif["generation"]:d},'
        f'"interface":{interface_text(vif["interface"], vif["portdata"])},'
        f'"result":{{"status":"{_STATUS[vif["status"]]}",'
        f'"applied_generation":{vif["applied_generation"]:d},'
        f'"detail":{_NULL if detail is None else text(detail)},'
        f'"digest":{_NULL if digest is None else text(digest)}}},'
        f'"revision":{vif["revision"]:d}}}'
    )


def _summary_text(vif: rows.Row) -> str:
    detail, uploaded, applied = vif["detail"], vif["uploaded_at"], vif["applied_at"]
    return (
        f'{{"mac":{text(vif["mac"])},"generation":{vif["generation"]:d},'
        f'"status":"{_STATUS[vif["status"]]}","applied_generation":{vif["applied_generation"]:d},'
        f'"detail":{_NULL if detail is None else text(detail)},'
        f'"uploaded_at":{_NULL if uploaded is None else timestamp(uploaded)},'
        f'"applied_at":{_NULL if applied is None else timestamp(applied)}}}'
    )


def migration_text(row: rows.Row, vifs: Sequence[rows.Row]) -> str:
    """``migration_json(rows.migration(row, vifs))``."""
    if row["resumed_at"] is not None:
        # The timeline then carries a float margin: pydantic writes that one.
        return rows.migration(row, vifs).model_dump_json()
    last: int | None = None  # timeline_of's last landing, from rows
    for v in vifs:
        if has_landed(v["status"], v["generation"], v["applied_generation"], v["applied_at"]):
            last = v["applied_at"] if last is None else max(last, v["applied_at"])
    summaries = ",".join([_summary_text(v) for v in vifs])
    name, registered_by = row["domain_name"], row["registered_by"]
    return (
        f'{{"id":{text(row["id"])},"domain_uuid":{text(row["domain_uuid"])},'
        f'"domain_name":{_NULL if name is None else text(name)},'
        f'"source_host":{text(row["source_host"])},'
        f'"destination_host":{text(row["destination_host"])},'
        f'"state":"{_STATE[row["state"]]}",'
        f'"on_backend_mismatch":{text(row["on_backend_mismatch"])},'
        f'"created_at":{timestamp(row["created_at"])},'
        f'"updated_at":{timestamp(row["updated_at"])},'
        f'"expires_at":{timestamp(row["expires_at"])},'
        f'"revision":{row["revision"]:d},"interfaces":[{summaries}],'
        f'"registered_by":{_NULL if registered_by is None else text(registered_by)},'
        f'"timeline":{{"resumed_at":null,"last_applied_at":'
        f'{_NULL if last is None else timestamp(last)},"margin_seconds":null,"late":null}}}}'
    )
