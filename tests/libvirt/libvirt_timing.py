"""Timing evidence for a migration: when did the destination guest resume, and
when did each PortData value land in the destination OVSDB?

Two observers run on the destination host while the migration happens:

- :class:`LifecycleWatcher`: ``virsh event --loop --timestamp --event lifecycle``.
  virsh stamps each event (UTC, millisecond precision) as it receives it; the
  resume is the ``Resumed Migrated`` event of the guest.
- :class:`OvsdbMonitor`: ``ovsdb-client monitor … Interface name,external_ids
  --format=json``; each JSON line is stamped with ``time.time()`` as it arrives
  (``ovsdb-client --timestamp`` segfaults with ``--format=json`` in OVS 3.1,
  and the text format only has millisecond stamps anyway).

Both are wall-clock times of *observation* on the same machine, each a few
hundred microseconds behind the event it reports, so a margin of a few ms is
within the noise; the figures are evidence, not assertions.

``margin = resumed_at - landed_at``: positive means the value was in the
destination OVSDB before the guest ran there.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from libvirt_harness import Guest, HarnessError, Host, domain_xml, new_guest, wait_for

_EVENT = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d{4}): "
    r"event 'lifecycle' for domain '?(?P<domain>[^']*)'?: (?P<event>\S+) (?P<detail>.*)$"
)


@dataclass(frozen=True)
class LifecycleEvent:
    at: float  # epoch seconds, as stamped by virsh
    domain: str
    event: str  # Started, Resumed, Defined, …
    detail: str  # Migrated, Added, …


@dataclass(frozen=True)
class RowUpdate:
    """One Interface row as it stood after an OVSDB change (initial, insert or new)."""

    at: float  # epoch seconds, when the line arrived
    row: str
    action: str
    external_ids: dict[str, str]


class _LineReader:
    """A subprocess whose stdout lines a thread hands to ``self._line`` as they arrive."""

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _start_process(self) -> None:
        self._proc = subprocess.Popen(
            self._argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._line(time.time(), line.rstrip("\n"))

    def _line(self, at: float, line: str) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)


class LifecycleWatcher(_LineReader):
    def __init__(self, host: Host) -> None:
        super().__init__(
            ["virsh", "-c", host.uri, "event", "--loop", "--timestamp", "--event", "lifecycle"]
        )
        self.host = host
        self.events: list[LifecycleEvent] = []

    def _line(self, at: float, line: str) -> None:
        m = _EVENT.match(line)
        if m is None:
            return
        stamp = datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S.%f%z").timestamp()
        with self._lock:
            self.events.append(LifecycleEvent(stamp, m["domain"], m["event"], m["detail"]))

    def start(self, timeout: float = 20) -> None:
        """Start watching; returns once virsh is provably subscribed.

        ``virsh event`` prints nothing when it has registered, so define and
        undefine throwaway domains until the ``Defined`` event of one shows up
        (a probe defined before the subscription is simply never seen).
        """
        self._start_process()
        deadline = time.monotonic() + timeout
        while True:
            probe = new_guest([], name=f"vb-probe-{uuid.uuid4().hex[:8]}")
            xml = self.host.root / f"{probe.name}.xml"
            xml.write_text(domain_xml(probe))
            self.host.virsh("define", str(xml))
            try:
                wait_for(lambda p=probe.name: self.find(p, "Defined") is not None, 1.0, "probe")
                return
            except HarnessError:
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"{self.host.name}: virsh event not subscribed within {timeout}s"
                    ) from None
            finally:
                self.host.virsh("undefine", probe.name)
                xml.unlink()

    def find(self, domain: str, event: str, detail: str | None = None) -> LifecycleEvent | None:
        with self._lock:
            for ev in self.events:
                if ev.domain == domain and ev.event == event and detail in (None, ev.detail):
                    return ev
        return None

    def wait(self, domain: str, event: str, detail: str | None, timeout: float) -> LifecycleEvent:
        found: list[LifecycleEvent] = []

        def seen() -> bool:
            ev = self.find(domain, event, detail)
            if ev is not None:
                found.append(ev)
            return ev is not None

        wait_for(seen, timeout, f"{self.host.name}: event {event} {detail} for {domain}")
        return found[0]


class OvsdbMonitor(_LineReader):
    def __init__(self, host: Host) -> None:
        super().__init__(
            ["ovsdb-client", "monitor", host.ovs_db, "Open_vSwitch", "Interface",
             "name,external_ids", "--format=json"]
        )  # fmt: skip
        self.host = host
        self.updates: list[RowUpdate] = []
        self._lines = 0

    def _line(self, at: float, line: str) -> None:
        try:
            table = json.loads(line)
        except ValueError:
            return
        rows: list[RowUpdate] = []
        last_uuid = ""
        for row_uuid, action, _name, ids in table.get("data", []):
            # A modified row comes as ["uuid","old",…] then ["","new",…].
            row_uuid = row_uuid or last_uuid
            last_uuid = row_uuid
            if action in ("initial", "insert", "new"):
                rows.append(RowUpdate(at, row_uuid, action, dict(ids[1])))
        with self._lock:
            self.updates.extend(rows)
            self._lines += 1

    def start(self) -> None:
        """Start monitoring; returns once the initial dump (proof of subscription) arrived."""
        self._start_process()

        def subscribed() -> bool:
            with self._lock:
                return self._lines > 0

        wait_for(subscribed, 20, f"{self.host.name}: ovsdb-client monitor")

    def landed(self, vm_uuid: str, mac: str, value: str) -> RowUpdate | None:
        """The first change after subscription at which the port held ``value``."""
        with self._lock:
            for up in self.updates:
                ids = up.external_ids
                if (
                    up.action != "initial"
                    and ids.get("vm-id") == vm_uuid
                    and ids.get("attached-mac", "").lower() == mac.lower()
                    and ids.get("PortData") == value
                ):
                    return up
        return None


@dataclass(frozen=True)
class PortTiming:
    mac: str
    port: str | None  # destination tap name (information only)
    portdata: str | None  # what the destination port holds after the migration
    landed_at: float | None
    resumed_at: float

    @property
    def margin_ms(self) -> float | None:
        """Resume minus landing, in ms: > 0 when the value was there before the guest ran."""
        if self.landed_at is None:
            return None
        return (self.resumed_at - self.landed_at) * 1000.0


class MigrationTimer:
    """Watch ``dst`` during a migration: ``with MigrationTimer(dst) as timer:``, then
    ``migrate(guest, src, dst)`` and ``timings = timer.collect(guest)`` inside the block.
    """

    def __init__(self, dst: Host) -> None:
        self.dst = dst
        self.lifecycle = LifecycleWatcher(dst)
        self.ovsdb = OvsdbMonitor(dst)
        self._timings: dict[str, list[PortTiming]] = {}

    def __enter__(self) -> MigrationTimer:
        try:
            self.lifecycle.start()
            self.ovsdb.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.lifecycle.stop()
        self.ovsdb.stop()

    def collect(self, guest: Guest, timeout: float = 30) -> list[PortTiming]:
        """Per OVS NIC of ``guest``: what the destination port holds, when it landed, resume.

        Call inside the ``with`` block, after the migration returned. Waits until
        the observers have seen the resume and every value the ports now hold.
        """
        resumed = self.lifecycle.wait(guest.name, "Resumed", "Migrated", timeout)
        timings = []
        for nic in guest.ovs_nics:
            port = self.dst.ovs_port(guest.uuid, nic.mac)
            if port is None:
                raise HarnessError(f"{self.dst.name}: no port for {guest.name} {nic.mac}")
            landed = None
            if port.portdata is not None:
                value = port.portdata
                wait_for(
                    lambda v=value, m=nic.mac: self.ovsdb.landed(guest.uuid, m, v) is not None,
                    timeout, f"{self.dst.name}: monitor to see PortData of {nic.mac}",
                )  # fmt: skip
                update = self.ovsdb.landed(guest.uuid, nic.mac, value)
                landed = update.at if update else None
            timings.append(PortTiming(nic.mac, port.name, port.portdata, landed, resumed.at))
        return timings


def format_table(title: str, sent: dict[str, str], rows: list[PortTiming]) -> str:
    """A small text table: NIC, value on the source, value on the destination, margin."""
    src_w = max([len("source PortData"), *(len(v) for v in sent.values())])
    dst_w = max([len("destination PortData"), *(len(t.portdata or "") for t in rows)])
    lines = [
        title,
        f"  {'mac':<17}  {'dst port':<8}  {'source PortData':<{src_w}}  "
        f"{'destination PortData':<{dst_w}}  margin (resume - landing)",
    ]
    for t in rows:
        margin = "-" if t.margin_ms is None else f"{t.margin_ms:+.1f} ms"
        held = t.portdata if t.portdata is not None else "(none)"
        lines.append(
            f"  {t.mac:<17}  {t.port or '-':<8}  {sent.get(t.mac, '-'):<{src_w}}  "
            f"{held:<{dst_w}}  {margin}"
        )
    return "\n".join(lines)
