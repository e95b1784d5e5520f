"""The Open vSwitch backend: PortData in ``external_ids`` of OVSDB Interface rows.

Ports are found by what libvirt writes on every Interface it creates,
``external_ids:vm-id=<domain uuid>`` and ``external_ids:attached-mac=<mac>``,
never by tap name (``vnet0`` here is ``vnet7`` there).

apply() is ONE OVSDB transaction per domain: every ``set`` (or ``remove``
for "no port data") addressed by row UUID, and the rows read back after it.
Row UUIDs come from the last lookup of that domain (inspect, collect and
apply keep them): OVSDB never reuses a UUID, and the transaction checks that
each row still carries the vif's vm-id and attached-mac, so a stale one
cannot hit another VM's port; the driver reports it (:class:`StalePort`), and
apply looks the ports up again and retries once. With no UUIDs known yet, apply
costs one lookup more, unless the driver's watch has seen the domain's rows
(``seen_ports``: a stale one fails its check as above).

How OVSDB is reached is the driver's business (driver.py): ``vsctl``
(ovsdb-client and ovs-vsctl processes, the default; see vsctl_driver.py for how concurrent
callers share them) or ``native`` (one persistent connection, native.py).

A handled interface without a local port makes apply and collect raise
:class:`PortNotFound` (nothing written): the port usually appears moments
later, and the agent retries until the migration's deadline.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from pydantic import Field

from vifbroker.model import (
    PORTDATA_DEFAULT_MAX,
    BackendInfo,
    Interface,
    normalize_mac,
    normalize_uuid,
)

from ..base import (
    ApplyResult,
    Backend,
    BackendError,
    BackendOptions,
    LocalPort,
    Outcome,
    PortEvent,
    PortNotFound,
)
from .driver import OvsDriver, StalePort, Write
from .rows import Port
from .vsctl import VsctlConfig
from .vsctl_driver import VsctlDriver

log = logging.getLogger(__name__)

VIRTUALPORT_TYPE = "openvswitch"


class OvsOptions(BackendOptions):
    db: str | None = Field(
        default=None, description="OVSDB to talk to, e.g. unix:SOCK (default: ovs-vsctl's own)"
    )
    no_wait: bool = Field(
        default=False,
        description="pass --no-wait to ovs-vsctl (no ovs-vswitchd, e.g. tests); port data "
        "is written with ovsdb-client transact, which never waits for ovs-vswitchd",
    )
    timeout: float = Field(default=5.0, gt=0, description="seconds one OVSDB call may take")
    max_portdata: int = Field(
        default=PORTDATA_DEFAULT_MAX,
        ge=1,
        description="largest port data (bytes, UTF-8) written to one Interface; every "
        "ovs-vsctl call downloads all of them, so large values slow the whole host",
    )
    workers: int = Field(
        default=4, ge=1, description="concurrent ovs-vsctl / ovsdb-client transact processes"
    )
    vsctl: str = Field(default="ovs-vsctl", description="the ovs-vsctl binary")
    ovsdb_client: str = Field(default="ovsdb-client", description="the ovsdb-client binary")
    monitor_backoff_max: float = Field(
        default=2.0,
        gt=0,
        description="longest pause before restarting a failed monitor (native: reconnecting)",
    )
    driver: Literal["vsctl", "native"] = Field(
        default="vsctl",
        description="how to reach OVSDB: vsctl (short-lived ovsdb-client and ovs-vsctl "
        "processes, the default) or native "
        "(one persistent connection through the ovs package's IDL)",
    )


class OpenVSwitchBackend(Backend):
    name = "openvswitch"
    Options = OvsOptions
    option_prefix = "ovs"

    def __init__(self, **options: Any) -> None:
        """Keywords: the fields of :class:`OvsOptions`."""
        opts = self.options = OvsOptions.model_validate(options)
        self.config = VsctlConfig(
            binary=opts.vsctl, db=opts.db, no_wait=opts.no_wait, timeout=opts.timeout
        )
        self.max_portdata = opts.max_portdata
        self.driver: OvsDriver
        if opts.driver == "native":
            # Imported here: only the native driver needs the ``ovs`` package.
            from .native import NativeDriver

            self.driver = NativeDriver(
                db=opts.db, timeout=opts.timeout, backoff_max=opts.monitor_backoff_max
            )
        else:
            self.driver = VsctlDriver(
                self.config,
                workers=opts.workers,
                ovsdb_client=opts.ovsdb_client,
                monitor_backoff_max=opts.monitor_backoff_max,
            )
        self._known: dict[str, dict[str, Port]] = {}  # domain -> mac -> port, last seen
        self._closed = False

    # -- seam ------------------------------------------------------------------------
    async def describe(self) -> BackendInfo:
        """Reachability, and the bridges that exist (when the driver can tell)."""
        detail = None
        names: list[str] | None = None
        try:
            await self.driver.ping()
            names = await self.driver.bridges()
        except BackendError as exc:
            detail = str(exc)
        return BackendInfo(
            name=self.name,
            available=detail is None,
            virtualport_types=[VIRTUALPORT_TYPE],
            detail=detail,
            bridges=names,
            max_portdata=self.max_portdata,
        )

    def handles(self, interface: Interface) -> bool:
        return interface.virtualport_type == VIRTUALPORT_TYPE

    async def inspect(self, domain_uuid: str, macs: Sequence[str]) -> dict[str, LocalPort | None]:
        domain = normalize_uuid(domain_uuid)
        if not macs and (seen := self.driver.seen_ports(domain)):
            # Asked for nothing (the agent getting ready for a domain's records):
            # remember its rows as the driver last saw them; the write checks them.
            self._known[domain] = seen
            return {}
        ports = await self._find(domain)
        found: dict[str, LocalPort | None] = {}
        for mac in macs:
            port = ports.get(normalize_mac(mac))
            found[mac] = LocalPort(normalize_mac(mac), port.name, port.portdata) if port else None
        return found

    async def collect(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[Interface]:
        domain = normalize_uuid(domain_uuid)
        if not any(self.handles(i) for i in interfaces):
            return list(interfaces)
        ports = await self._find(domain)
        missing = [i.mac for i in interfaces if self.handles(i) and i.mac not in ports]
        if missing:
            raise PortNotFound(domain, missing[0], missing)
        return [
            i.with_portdata(ports[i.mac].portdata) if self.handles(i) else i for i in interfaces
        ]

    async def apply(self, domain_uuid: str, interfaces: Sequence[Interface]) -> list[ApplyResult]:
        domain = normalize_uuid(domain_uuid)
        results: dict[int, ApplyResult] = {}
        todo: list[tuple[int, Interface]] = []
        for index, interface in enumerate(interfaces):
            if not self.handles(interface):
                results[index] = ApplyResult(
                    interface.mac,
                    Outcome.SKIPPED,
                    f"not an Open vSwitch port (virtualport type "
                    f"{interface.virtualport_type or 'none'})",
                )
            elif problem := self._refuse(interface.portdata):
                results[index] = ApplyResult(interface.mac, Outcome.FAILED, problem)
            else:
                todo.append((index, interface))
        if todo:
            readback = await self._write(domain, [i for _, i in todo])
            for (index, interface), read in zip(todo, readback, strict=True):
                results[index] = self._result(interface, read)
            # One line per transaction, not per vif: an evacuation applies thousands.
            applied = zip((i for _, i in todo), readback, strict=True)
            log.info(
                "domain %s: port data applied on %s",
                domain,
                ", ".join(f"mac {i.mac} port {r.name}" for i, r in applied if r),
            )
        return [results[i] for i in range(len(interfaces))]

    async def watch(self) -> AsyncIterator[PortEvent]:
        if self._closed:
            return
        async for event in self.driver.watch():
            yield event

    async def close(self) -> None:
        self._closed = True
        await self.driver.close()

    # -- internals -----------------------------------------------------------------------
    def _refuse(self, portdata: str | None) -> str | None:
        """Why ``portdata`` cannot be written, or None when it can."""
        if portdata is None:
            return None
        if "\x00" in portdata:
            return "port data contains NUL, which OVSDB strings cannot carry"
        try:
            size = len(portdata.encode("utf-8"))
        except UnicodeEncodeError:
            return "port data is not valid UTF-8"
        if size > self.max_portdata:
            return f"port data is {size} bytes, above this host's limit of {self.max_portdata}"
        return self.driver.refuse(portdata)

    async def _find(self, domain: str) -> dict[str, Port]:
        ports = await self.driver.ports(domain)
        if ports:
            self._known[domain] = ports
        else:
            self._known.pop(domain, None)  # remember only domains that have ports here
        return ports

    async def _write(self, domain: str, interfaces: list[Interface]) -> list[Port | None]:
        """Write every interface's port data in one transaction; the rows read back."""
        for attempt in (1, 2):
            ports = self._known.get(domain) or self.driver.seen_ports(domain) or {}
            if attempt == 2 or any(i.mac not in ports for i in interfaces):
                ports = await self._find(domain)
            missing = [i.mac for i in interfaces if i.mac not in ports]
            if missing:
                raise PortNotFound(domain, missing[0], missing)
            rows = [ports[i.mac] for i in interfaces]
            targets = [p.uuid for p in rows]
            # The row must still carry the tags it was found by: a re-plugged
            # port's row is never written (the driver raises StalePort).
            writes = [
                Write(p.uuid, i.portdata, p.tag) for i, p in zip(interfaces, rows, strict=True)
            ]
            try:
                read_rows = await self.driver.write(writes)
            except StalePort:
                if attempt == 1:
                    log.info("domain %s: a known port row is gone, looking ports up again", domain)
                    self._known.pop(domain, None)
                    continue
                raise
            # A row that no longer carries this domain's vm-id and the vif's
            # MAC was re-plugged under us: it vouches for nothing.
            read = [
                row if row and row.domain == domain and row.mac == i.mac else None
                for i, row in (
                    (i, read_rows.get(u)) for i, u in zip(interfaces, targets, strict=True)
                )
            ]
            self._known.setdefault(domain, {}).update({r.mac: r for r in read if r})
            return read
        raise AssertionError("unreachable")  # pragma: no cover

    def _result(self, interface: Interface, read: Port | None) -> ApplyResult:
        if read is None:
            # The row we wrote no longer carries this domain's vm-id: a port
            # re-plugged under us. Nothing to vouch for.
            return ApplyResult(interface.mac, Outcome.FAILED, "port changed during apply")
        return ApplyResult(interface.mac, Outcome.APPLIED, readback=read.portdata)
