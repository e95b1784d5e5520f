"""Find each domain's ports, many domains per ovs-vsctl call.

ovs-vsctl evaluates a ``find`` by scanning every Interface row, so 500
domains looked up as 500 finds in one (merged) process cost seconds on a
host with 2,000 ports. Lookups that arrive in the same event-loop turn (an
evacuation's domains, an agent polling for ports) therefore share one call,
and lookups asked while a call runs share the next one (one call at a time);
each caller gets its own domain's ports.

That call is ``find ... external_ids:vm-id{in}[...]`` for a few domains. But
``{in}`` costs ovs-vsctl about a millisecond of CPU per domain named on a
host with 2,000 ports (measured: 1 domain 11 ms, 32 domains 55 ms, 500
domains 568 ms), while ``list Interface`` of every row costs 13 ms however
many domains are wanted (and ~20 ms here to read its 2,000 rows). So past
``FIND_MAX_DOMAINS`` domains the lookup lists every row and keeps the wanted
domains' ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Collection

from vifbroker.model import normalize_uuid

from ..base import BackendError, BackendUnavailable
from .pool import VsctlPool
from .rows import Port, PortRow, by_mac
from .vsctl import Command, Transaction, decode_datum

log = logging.getLogger(__name__)


def tagged_ports(command: Command) -> list[Port]:
    """The rows of a find/list output that carry a vm-id and a valid attached-mac."""
    ports = []
    for row in command.rows():
        ids = {str(k): str(v) for k, v in row["external_ids"].items()}
        port = PortRow(str(row["name"]), ids).tagged(str(row["_uuid"]))
        if port is not None:
            ports.append(port)
    return ports


#: more domains than this are looked up by listing every Interface row (see above)
FIND_MAX_DOMAINS = 16


def wanted_ports(command: Command, domains: Collection[str]) -> list[Port]:
    """:func:`tagged_ports` of these domains only: the other rows of a listing of
    every row are skipped on their vm-id, without decoding them (2,000 rows: ~20
    ms to decode each, a few to skip)."""
    if command.output is None:
        raise BackendError(f"{command.verb}: transaction has not run")
    doc = json.loads(command.output)
    column = {str(h): i for i, h in enumerate(doc["headings"])}
    at_uuid, at_name, at_ids = column["_uuid"], column["name"], column["external_ids"]
    ports = []
    for row in doc["data"]:
        pairs = row[at_ids][1]  # ["map", [[key, value], ...]]: strings both
        vm_id = next((v for k, v in pairs if k == "vm-id"), None)
        if not isinstance(vm_id, str):
            continue
        try:
            key = normalize_uuid(vm_id)
        except ValueError:
            key = vm_id.lower()  # as PortRow.port keeps it
        if key not in domains:
            continue
        ids = {str(k): str(v) for k, v in pairs}
        port = PortRow(str(row[at_name]), ids).tagged(str(decode_datum(row[at_uuid])))
        if port is not None:
            ports.append(port)
    return ports


class PortLookup:
    def __init__(self, pool: VsctlPool, *, find_max_domains: int = FIND_MAX_DOMAINS) -> None:
        self.pool = pool
        # ~40 bytes a domain: far below the 128 KiB argv element cap.
        self.find_max_domains = find_max_domains
        self._pending: dict[str, list[asyncio.Future[dict[str, Port]]]] = {}
        #: a flush is scheduled or running: new look-ups join its next round
        self._active = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def ports(self, domain: str) -> dict[str, Port]:
        """This domain's ports by MAC (empty when it has none)."""
        future: asyncio.Future[dict[str, Port]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(domain, []).append(future)
        if not self._active:
            self._active = True
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def close(self) -> None:
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
        txn = Transaction()
        if len(waiting) > self.find_max_domains:
            find = txn.list_interfaces([])  # every row; the wanted domains' are kept below
        else:
            find = txn.find_domains(list(waiting))
        try:
            await self.pool.run(txn)
            grouped: dict[str, list[Port]] = {}
            for port in wanted_ports(find, waiting.keys()):
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
