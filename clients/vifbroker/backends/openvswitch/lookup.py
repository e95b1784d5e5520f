"""Find each domain's ports, many domains per ``ovsdb-client query``.

Lookups that arrive in the same event-loop turn (an evacuation's domains, an
agent polling for ports) share one process, and lookups asked while one runs
share the next (one at a time); each caller gets its own domain's ports.

The query is one ``select`` per domain, ``external_ids includes {vm-id: D}``:
ovsdb-server scans every Interface row for each (about 0.25 ms a domain on a
host with 2,000 ports) and sends only the wanted rows. Past
``SELECT_MAX_DOMAINS`` domains one ``select`` of every row costs less (about
35 ms of the server's CPU and 30 ms here to decode 2,000 rows with their port
data), and the wanted domains' rows are kept, the others skipped on their
vm-id before the rest of the row is decoded. (ovs-vsctl, used before,
downloaded the whole table on every call: ~28 ms of its own CPU plus ~15 ms
of the server's, and its ``find ... {in}`` cost ~1 ms per domain named.)

With a watch running (the agent always has one), its monitor's view knows
which rows each domain had a moment ago: those rows are read by UUID (the
server's index, no scan), and only a domain the view does not know (yet) is
looked for by vm-id. The rows themselves are always read fresh here: the
view only saves the scan. (A port plugged for a domain whose other ports the
view holds is seen once the monitor reports it: a moment later, with the
port event that wakes whoever waits for it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ..base import BackendUnavailable
from .rows import Port, PortRow, by_mac, domain_key
from .transact import OvsdbClient, encode, first_error, select_op, transaction, where_uuid

log = logging.getLogger(__name__)

#: more domains than this are looked up by selecting every Interface row (see above)
SELECT_MAX_DOMAINS = 128
#: more rows than this known by UUID: every row too (~110 bytes of argument each,
#: and the whole query is one argv element of at most 128 KiB)
SELECT_MAX_ROWS = 512


#: the UUIDs of a domain's rows as the watch saw them, or None (not known)
Hint = Callable[[str], set[str] | None]


def lookup_ops(
    domains: Sequence[str], *, max_scans: int, hint: Hint | None = None
) -> list[dict[str, Any]]:
    """Selects of the rows of ``domains``: by UUID where ``hint`` knows them, else
    one scan by vm-id each, or one select of every row past ``max_scans`` scans."""
    rows: set[str] = set()
    scan: list[str] = []
    for domain in domains:
        known = hint(domain) if hint is not None else None
        if known:
            rows |= known
        else:
            scan.append(domain)
    if len(scan) > max_scans or len(rows) > SELECT_MAX_ROWS:
        return [select_op([])]  # every row: the ones known by UUID among them
    ops = [select_op(where_uuid(u)) for u in sorted(rows)]
    return ops + [select_op([["external_ids", "includes", ["map", [["vm-id", d]]]]]) for d in scan]


def wanted_ports(results: Sequence[Any], domains: Collection[str]) -> list[Port]:
    """The tagged rows of these domains in a lookup's reply.

    Rows of other domains (all but a few, when every row was selected) are
    skipped on their vm-id before their other columns are decoded.
    """
    ports = []
    seen: set[str] = set()  # a row found by UUID and by a scan is one port
    for result in results:
        for row in result["rows"]:
            pairs = row["external_ids"][1]  # ["map", [[key, value], ...]]: strings both
            vm_id = next((v for k, v in pairs if k == "vm-id"), None)
            if not isinstance(vm_id, str):
                continue
            if domain_key(vm_id) not in domains:
                continue
            uuid = str(row["_uuid"][1])
            if uuid in seen:
                continue
            seen.add(uuid)
            port = PortRow(str(row["name"]), {str(k): str(v) for k, v in pairs}).tagged(uuid)
            if port is not None:
                ports.append(port)
    return ports


class PortLookup:
    def __init__(
        self,
        client: OvsdbClient,
        *,
        select_max_domains: int = SELECT_MAX_DOMAINS,
        hint: Hint | None = None,
    ) -> None:
        self.client = client
        self.hint = hint
        # ~130 bytes a domain: far below the 128 KiB argv element cap.
        self.select_max_domains = select_max_domains
        self._pending: dict[str, list[asyncio.Future[dict[str, Port]]]] = {}
        #: a flush is scheduled or running: new look-ups join its next round
        self._active = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def ports(self, domain: str) -> dict[str, Port]:
        """This domain's ports by MAC (empty when it has none)."""
        if self._closed:
            raise BackendUnavailable("openvswitch backend is closed")
        future: asyncio.Future[dict[str, Port]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(domain, []).append(future)
        if not self._active:
            self._active = True
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pending, self._pending = self._pending, {}
        _fail(pending, BackendUnavailable("openvswitch backend closed"))

    async def _flush(self) -> None:
        # One loop turn: callers started together (gather) all join the first round.
        # Then one round at a time: look-ups asked while one runs (an evacuation's
        # domains arriving in many small inbox answers) share the next call instead
        # of each paying a scan of every row. An idle agent's look-up runs at once.
        try:
            await asyncio.sleep(0)
            while self._pending:
                pending, self._pending = self._pending, {}
                await self._run(pending)
        finally:
            self._active = False

    async def _run(self, waiting: dict[str, list[asyncio.Future[dict[str, Port]]]]) -> None:
        ops = lookup_ops(list(waiting), max_scans=self.select_max_domains, hint=self.hint)
        try:
            results = await self.client.transact(transaction([encode(ops)]), read_only=True)
            if failed := first_error(results, len(ops)):
                raise failed
            grouped: dict[str, list[Port]] = {}
            for port in wanted_ports(results, waiting.keys()):
                grouped.setdefault(port.domain, []).append(port)
        except asyncio.CancelledError:
            _fail(waiting, BackendUnavailable("openvswitch backend closed"))
            raise
        except Exception as exc:
            _fail(waiting, exc)
            return
        for domain, futures in waiting.items():
            ports = by_mac(grouped.get(domain, []))
            for future in futures:
                if not future.done():
                    future.set_result(ports)


def _fail(waiting: dict[str, list[asyncio.Future[dict[str, Port]]]], exc: Exception) -> None:
    for futures in waiting.values():
        for future in futures:
            if not future.done():
                future.set_exception(exc)
