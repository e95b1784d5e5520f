"""Find each domain's ports, many domains per ovs-vsctl ``find``.

ovs-vsctl evaluates a ``find`` by scanning every Interface row, so 500
domains looked up as 500 finds in one (merged) process cost seconds on a
host with 2,000 ports, while one ``find`` for all 500 costs tens of
milliseconds. Lookups that arrive in the same event-loop turn (an
evacuation's domains, an agent polling for ports) therefore share one
``find ... external_ids:vm-id{in}[...]``; each caller gets its own domain's
ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from vifbroker.model import normalize_mac, normalize_uuid

from ..base import BackendUnavailable
from .pool import VsctlPool
from .vsctl import PORTDATA_KEY, Command, Transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Port:
    """An Interface row that libvirt tagged with a domain and a MAC."""

    uuid: str
    name: str
    domain: str
    mac: str
    portdata: str | None


def tagged_ports(command: Command) -> list[Port]:
    """The rows of a find/list output that carry a vm-id and a valid attached-mac."""
    ports = []
    for row in command.rows():
        ids = row["external_ids"]
        vm_id, mac = ids.get("vm-id"), ids.get("attached-mac")
        if not vm_id or not mac:
            continue
        try:
            mac = normalize_mac(str(mac))
        except ValueError:
            continue
        try:
            domain = normalize_uuid(str(vm_id))
        except ValueError:
            domain = str(vm_id).lower()
        ports.append(Port(str(row["_uuid"]), str(row["name"]), domain, mac, ids.get(PORTDATA_KEY)))
    return ports


def by_mac(ports: list[Port]) -> dict[str, Port]:
    found: dict[str, Port] = {}
    for port in sorted(ports, key=lambda p: p.name, reverse=True):
        if port.mac in found:
            # Two rows for one vif (an old port not yet deleted): one is
            # picked deterministically (lowest name) rather than writing both.
            log.warning(
                "domain %s mac %s has several ports: %s, %s",
                port.domain,
                port.mac,
                port.name,
                found[port.mac].name,
            )
        found[port.mac] = port
    return found


class PortLookup:
    def __init__(self, pool: VsctlPool, *, max_domains: int = 1000) -> None:
        self.pool = pool
        # ~40 bytes a domain: stays far below the 128 KiB argv element cap.
        self.max_domains = max_domains
        self._pending: dict[str, list[asyncio.Future[dict[str, Port]]]] = {}
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def ports(self, domain: str) -> dict[str, Port]:
        """This domain's ports by MAC (empty when it has none)."""
        future: asyncio.Future[dict[str, Port]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(domain, []).append(future)
        if not self._flush_scheduled:
            self._flush_scheduled = True
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

    async def _flush(self) -> None:
        # One loop turn: callers started together (gather) all join this find.
        await asyncio.sleep(0)
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        domains = list(pending)
        await asyncio.gather(
            *(
                self._run({d: pending[d] for d in domains[i : i + self.max_domains]})
                for i in range(0, len(domains), self.max_domains)
            )
        )

    async def _run(self, waiting: dict[str, list[asyncio.Future[dict[str, Port]]]]) -> None:
        txn = Transaction()
        find = txn.find_domains(list(waiting))
        try:
            await self.pool.run(txn)
            grouped: dict[str, list[Port]] = {}
            for port in tagged_ports(find):
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
