"""The ``vsctl`` driver: short-lived OVS command-line processes, no persistent connection.

* lookups: ``ovsdb-client query`` (lookup.py), many domains per process;
* writes: ``ovsdb-client transact`` (transact.py), each domain's writes one
  transaction guarded by its rows' tags and read back in it, transactions
  arriving together merged into one process (batcher.py); a domain whose
  writes do not fit in one argv element goes through one ``ovs-vsctl``
  process instead (each value its own argument);
* ping and bridges: ``ovs-vsctl``, which needs no Interface rows for them;
* watching: ``ovsdb-client monitor`` (monitor.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

from ..base import PortEvent
from .batcher import TooLarge, TransactBatcher
from .driver import OvsDriver, StalePort, Write
from .lookup import PortLookup
from .monitor import InterfaceMonitor
from .pool import VsctlPool
from .rows import Port, PortRow, by_mac
from .transact import OpFailed, OvsdbClient, read_back, write_ops
from .vsctl import (
    MAX_ARG_BYTES,
    Command,
    Transaction,
    VsctlConfig,
    VsctlError,
    VsctlRunner,
    portdata_arg,
)

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


class VsctlDriver(OvsDriver):
    def __init__(
        self,
        config: VsctlConfig,
        *,
        workers: int = 4,
        ovsdb_client: str = "ovsdb-client",
        monitor_backoff_max: float = 2.0,
    ) -> None:
        self.config = config
        self.ovsdb_client = ovsdb_client
        self.monitor_backoff_max = monitor_backoff_max
        self.runner = VsctlRunner(config)
        self.pool = VsctlPool(self.runner, workers=workers)
        self.client = OvsdbClient(ovsdb_client, config.db, config.timeout)
        self.batcher = TransactBatcher(self.client, workers=workers)
        self._monitors: set[InterfaceMonitor] = set()
        self.lookup = PortLookup(self.client, hint=self._rows_of)

    async def ping(self) -> None:
        txn = Transaction()
        txn.add(Command("list", ("Open_vSwitch",), options=("--columns=_uuid",), table=True))
        await self.pool.run(txn)

    async def bridges(self) -> list[str] | None:
        txn = Transaction()
        names = txn.add(Command("list", ("Bridge",), options=("--columns=name",), table=True))
        await self.pool.run(txn)
        return sorted(str(row["name"]) for row in names.rows())

    async def ports(self, domain: str) -> dict[str, Port]:
        return await self.lookup.ports(domain)

    def seen_ports(self, domain: str) -> dict[str, Port] | None:
        for monitor in self._monitors:
            if (ports := monitor.ports_of(domain)) is not None:
                return by_mac(ports) if ports else None
        return None

    def _rows_of(self, domain: str) -> set[str] | None:
        """The row UUIDs a running watch last saw for ``domain`` (lookup.py's hint)."""
        for monitor in self._monitors:
            if (rows := monitor.rows_of(domain)) is not None:
                return rows
        return None

    async def write(self, writes: Sequence[Write]) -> dict[str, Port]:
        try:
            results = await self.batcher.run(write_ops(writes))
        except TooLarge:
            log.debug("%d writes too large for one ovsdb-client argument: ovs-vsctl", len(writes))
            return await self._write_vsctl(writes)
        except OpFailed as exc:
            if exc.index < len(writes):  # a guard: the row is gone or re-plugged
                raise StalePort(
                    f"Interface row {writes[exc.index].uuid} is gone or changed"
                ) from exc
            raise
        return read_back(writes, results)

    async def _write_vsctl(self, writes: Sequence[Write]) -> dict[str, Port]:
        txn = Transaction()
        for write in writes:
            if write.portdata is None:
                txn.remove_portdata(write.uuid)
            else:
                txn.set_portdata(write.uuid, write.portdata)
        # Read back in the same transaction, by UUID: no scan of every row.
        readback = txn.list_interfaces(sorted({w.uuid for w in writes}))
        try:
            await self.pool.run(txn)
        except VsctlError as exc:
            if exc.no_row:
                raise StalePort(str(exc)) from exc
            raise
        return {p.uuid: p for p in tagged_ports(readback)}

    def refuse(self, portdata: str) -> str | None:
        # JSON escaping grows a value at most 6-fold (\u00XX); only near the
        # argv element cap is it worth rendering the argument to measure it.
        size = len(portdata.encode("utf-8"))
        if 6 * size + 64 > MAX_ARG_BYTES and len(portdata_arg(portdata).encode()) > MAX_ARG_BYTES:
            return "port data is too large for one ovs-vsctl argument once JSON-escaped"
        return None

    async def watch(self) -> AsyncIterator[PortEvent]:
        monitor = InterfaceMonitor(
            binary=self.ovsdb_client, db=self.config.db, backoff_max=self.monitor_backoff_max
        )
        self._monitors.add(monitor)
        try:
            async for event in monitor.events():
                yield event
        finally:
            self._monitors.discard(monitor)
            await monitor.close()

    async def close(self) -> None:
        for monitor in list(self._monitors):
            await monitor.close()
        await self.lookup.close()
        await self.batcher.close()
        await self.pool.close()
