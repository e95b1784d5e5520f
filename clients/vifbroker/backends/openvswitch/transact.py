"""Raw OVSDB transactions run by ``ovsdb-client transact`` (and ``query``), one process each.

ovs-vsctl downloads the Interface table (every name and external_ids) before
it runs any command, so each call costs ~28 ms of CPU in ovs-vsctl and ~15 ms
in ovsdb-server on a host with 2,000 ports, even to set one key. An
``ovsdb-client transact`` process sends the transaction as it is and prints
the reply: ~4 ms and ~1 ms. The transactions name rows by UUID (the server
finds them through its UUID index, without a scan), so the vsctl driver
writes and reads back through it, and keeps ovs-vsctl for what needs no
Interface rows (ping, bridges) and for a domain whose writes do not fit in
one argv element (:data:`MAX_TXN_BYTES`).

Unlike ovs-vsctl without ``--no-wait``, ovsdb-client never waits for
ovs-vswitchd to reconfigure after a write: PortData is nothing ovs-vswitchd
acts on (the SDN controller reads it from OVSDB), so that wait was only delay.

The reply is one JSON array, one result per operation. A failed operation
reads ``{"error": ..., "details": ...}`` and the server committed nothing;
an error after the last operation is the commit's own (a constraint).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from .. import spawn
from ..base import BackendError, BackendTimeout, BackendUnavailable
from .driver import OvsdbError, Write
from .rows import Port, PortRow
from .vsctl import MAX_ARG_BYTES, PORTDATA_KEY, tool_failure

log = logging.getLogger(__name__)

DATABASE = "Open_vSwitch"
#: the whole transaction is one argv element: Linux caps it at 32 pages
MAX_TXN_BYTES = MAX_ARG_BYTES
#: columns a lookup or a read back asks for
PORT_COLUMNS = ["_uuid", "name", "external_ids"]

Op = dict[str, Any]

_UNREACHABLE = ("failed to connect", "receive failed", "connection dropped", "end of file")


class OpFailed(OvsdbError):
    """Operation ``index`` of a transaction failed, so nothing was written."""

    def __init__(self, index: int, error: str, details: str = "") -> None:
        super().__init__(
            f"OVSDB operation {index} failed: {error}" + (f" ({details})" if details else "")
        )
        self.index = index
        self.error = error
        self.details = details


# ensure_ascii=False: non-ASCII port data stays one UTF-8 sequence, not a 6-12
# byte escape, so large values still fit in the argv element. One encoder,
# built once: json.dumps with options builds one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def encode(ops: Sequence[Op]) -> str:
    """Operations as the comma-joined JSON that goes between ``[DATABASE,`` and ``]``."""
    return _ENCODER.encode(list(ops))[1:-1]


def transaction(encoded: Sequence[str]) -> str:
    """The ``transact`` argument for several :func:`encode` d op lists (empty ones skipped)."""
    return f'["{DATABASE}",' + ",".join(e for e in encoded if e) + "]"


def where_uuid(uuid: str) -> list[Any]:
    return [["_uuid", "==", ["uuid", uuid]]]


def portdata_mutations(portdata: str | None) -> list[Any]:
    """Set (a string) or remove (None) the PortData key of external_ids, leaving the other keys."""
    mutations: list[Any] = [["external_ids", "delete", ["set", [PORTDATA_KEY]]]]
    if portdata is not None:
        mutations.append(["external_ids", "insert", ["map", [[PORTDATA_KEY, portdata]]]])
    return mutations


def guard_op(write: Write) -> Op:
    """Fails the transaction unless the row exists and still carries ``write.tag``.

    A ``wait`` with timeout 0 on the row selected by UUID *and* its tags: a row
    deleted, or re-plugged for another VM or MAC, selects nothing, which is not
    the one row expected, so the server answers "timed out" and writes nothing.
    """
    where = where_uuid(write.uuid)
    if write.tag is not None:
        vm_id, mac = write.tag
        where.append(
            ["external_ids", "includes", ["map", [["vm-id", vm_id], ["attached-mac", mac]]]]
        )
    return {
        "op": "wait",
        "table": "Interface",
        "timeout": 0,
        "where": where,
        "columns": ["_uuid"],
        "until": "==",
        "rows": [{"_uuid": ["uuid", write.uuid]}],
    }


def mutate_op(write: Write) -> Op:
    return {
        "op": "mutate",
        "table": "Interface",
        "where": where_uuid(write.uuid),
        "mutations": portdata_mutations(write.portdata),
    }


def select_op(where: list[Any]) -> Op:
    return {"op": "select", "table": "Interface", "where": where, "columns": PORT_COLUMNS}


def write_ops(writes: Sequence[Write]) -> list[Op]:
    """Guards, then the writes, then a read back of every row, by UUID: one transaction."""
    uuids = sorted({w.uuid for w in writes})
    return [
        *(guard_op(w) for w in writes),
        *(mutate_op(w) for w in writes),
        *(select_op(where_uuid(u)) for u in uuids),
    ]


def row_of(row: dict[str, Any]) -> tuple[str, PortRow]:
    """A selected row (``_uuid``, ``name``, ``external_ids``) as (uuid, PortRow)."""
    ids = {str(k): str(v) for k, v in row["external_ids"][1]}
    return str(row["_uuid"][1]), PortRow(str(row["name"]), ids)


def read_back(writes: Sequence[Write], results: Sequence[Any]) -> dict[str, Port]:
    """The tagged rows that :func:`write_ops`' selects returned, by UUID."""
    found: dict[str, Port] = {}
    for result in results[2 * len(writes) :]:
        for row in result["rows"]:
            uuid, port_row = row_of(row)
            port = port_row.tagged(uuid)
            if port is not None:
                found[uuid] = port
    return found


def first_error(results: Sequence[Any], ops: int) -> OpFailed | None:
    """The failed operation of a reply (index ``ops``: the commit itself), or None."""
    for index, result in enumerate(results):
        if isinstance(result, dict) and "error" in result:
            return OpFailed(index, str(result["error"]), str(result.get("details", "")))
    if len(results) < ops:
        return OpFailed(len(results), "short reply", f"{len(results)} results for {ops} operations")
    return None


class OvsdbClient:
    """Runs one ``ovsdb-client`` process per transaction and translates its failures."""

    def __init__(self, binary: str = "ovsdb-client", db: str | None = None, timeout: float = 5.0):
        self.binary = binary
        self.db = db
        self.timeout = timeout
        #: processes spawned so far (for logs and benchmarks, not for logic)
        self.calls = 0

    def argv(self, command: str, text: str) -> list[str]:
        # Whole seconds, as ovs-vsctl's: never round down to 0 (= forever).
        server = [self.db] if self.db else []
        return [self.binary, f"--timeout={max(1, round(self.timeout))}", command, *server, text]

    async def transact(self, text: str, *, read_only: bool = False) -> list[Any]:
        """The reply to ``text`` (see :func:`transaction`): one result per operation."""
        argv = self.argv("query" if read_only else "transact", text)
        self.calls += 1
        try:
            # ovsdb-client enforces --timeout itself (SIGALRM); ours is the backstop.
            out, err, rc = await spawn.run(argv, self.timeout + 2.0)
        except OSError as exc:
            raise BackendUnavailable(f"cannot run {self.binary}: {exc}") from exc
        except TimeoutError as exc:
            raise BackendTimeout(f"{self.binary} ran past {self.timeout}s") from exc
        if rc != 0:
            raise _translate(rc, err.decode("utf-8", "replace"), self.timeout)
        try:
            reply = json.loads(out)
        except ValueError as exc:
            raise BackendError(f"{self.binary} printed no JSON: {out[:200]!r}") from exc
        if not isinstance(reply, list):
            raise BackendError(f"{self.binary} printed {type(reply).__name__}, not a list")
        return reply


def _translate(rc: int, stderr: str, timeout: float) -> BackendError:
    return tool_failure(
        "ovsdb-client", rc, stderr, timeout, _UNREACHABLE,
        lambda message: OvsdbError(f"ovsdb-client: {message}"),
    )  # fmt: skip
