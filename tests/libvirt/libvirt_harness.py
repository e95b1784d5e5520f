"""Two real libvirt hypervisors on one machine, each with its own Open vSwitch.

This is the code form of /work/shared/LIBVIRT-TESTBED.md. A :class:`Host` owns a
directory (``HOSTDIR``) and every process it starts:

``HOSTDIR/ovs``
    a private ``ovsdb-server`` and ``ovs-vswitchd`` (host A: userspace ``netdev``
    datapath, which gives the kernel tap ``br-int`` libvirt reads the MTU of;
    host B: ``--enable-dummy=override``, because two netdev vswitchds in one
    network namespace would both want a kernel ``br-int``). Bind-mounted as
    ``/run/openvswitch`` for libvirtd, so libvirt's own ``ovs-vsctl`` calls reach
    this host's OVSDB.
``HOSTDIR/etc``, ``run``, ``lib``, ``log``, ``cache``
    ``/etc/libvirt`` (a copy, with the recipe's qemu.conf/libvirtd.conf
    additions), ``/run/libvirt``, ``/var/lib/libvirt``, ``/var/log/libvirt``,
    ``/var/cache/libvirt`` of a monolithic ``libvirtd --listen`` that runs in its
    own mount namespace (``unshare --mount --propagation private``). Inside that
    namespace ``/run`` is a fresh tmpfs, so the mount points ``/run/libvirt`` and
    ``/run/openvswitch`` never have to be created on the real host.

Host B's libvirtd, like A's, reads the MTU of ``br-int`` from the kernel when
it plugs a tap; with a dummy datapath B has no such device and finds A's (both
share one network namespace). So B needs A up, and hosts start A first.

The real ``/etc`` is never edited; nothing outside ``HOSTDIR`` is written.
Teardown is by PID: every domain is destroyed, libvirtd is stopped, any
process still inside libvirtd's mount namespace (a QEMU that outlived it) is
killed, then ovs-vswitchd and ovsdb-server, each from its pidfile. When the
last process of the namespace exits the kernel drops its mounts, so there is
nothing to unmount from outside.

Guests are diskless (:func:`domain_xml`); OVS ports are always found by
``external_ids:vm-id`` + ``external_ids:attached-mac`` (:meth:`Host.ovs_port`),
never by tap name, because the tap name differs on every host.

vifbroker around this testbed (a broker, one agent per host, the controller's
steps) is in ``libvirt_stack.py`` and ``libvirt_scenarios.py``.

libvirt 9.0 still does its own position-based carry underneath; the layouts
where it gets things wrong (a non-OVS NIC first, see the baseline) are the
ones that show what vifbroker adds.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from libvirt_config import BINDS, write_libvirt_config
from libvirt_guest import (
    BRIDGE,
    Guest,
    Nic,
    OvsNic,
    OvsPort,
    UserNic,
    domain_xml,
    mac,
    new_guest,
)
from libvirt_proc import (
    HarnessError,
    MachineLock,
    free_port,
    free_port_range,
    kill_pid,
    run,
    wait_for,
)

__all__ = [
    "BRIDGE", "REQUIRED_BINARIES", "Guest", "HarnessError", "Host", "Nic", "OvsNic",
    "OvsPort", "Testbed", "UserNic", "domain_xml", "mac", "migrate", "new_guest", "wait_for",
]  # fmt: skip

OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
REQUIRED_BINARIES = (
    "libvirtd", "virsh", "qemu-system-x86_64", "ovsdb-server", "ovs-vswitchd",
    "ovsdb-tool", "ovs-vsctl", "ovsdb-client", "unshare", "mount",
)  # fmt: skip


class Host:
    """One hypervisor: private OVS + libvirtd in a mount namespace, under ``root``."""

    def __init__(
        self, name: str, root: Path, *, dummy_datapath: bool, hooks: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.root = root
        self.dummy_datapath = dummy_datapath
        # libvirt hook scripts (``qemu``, ``daemon`` …) by name: libvirtd looks
        # for them only when it starts, so they are installed before it does.
        self.hooks = dict(hooks or {})
        self.tcp_port = free_port()
        self.migration_ports = free_port_range(8)
        self.host_uuid = str(uuid.uuid4())
        self.libvirtd: subprocess.Popen[bytes] | None = None
        self.ovs_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.mnt_ns: str | None = None

    # -- addresses and helpers --

    @property
    def ovs_dir(self) -> Path:
        return self.root / "ovs"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.root}/run/libvirt-sock"

    @property
    def tcp_uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.tcp_port}/system"

    @property
    def ovs_db(self) -> str:
        return f"unix:{self.ovs_dir}/db.sock"

    @property
    def libvirtd_log(self) -> Path:
        return self.root / "log" / "libvirtd.log"

    def _ovs_env(self) -> dict[str, str]:
        d = str(self.ovs_dir)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d}

    def vsctl(self, *args: str) -> str:
        return run(["ovs-vsctl", f"--db={self.ovs_db}", "--timeout=20", *args])

    def virsh(self, *args: str, timeout: float = 120) -> str:
        return run(["virsh", "-q", "-c", self.uri, *args], timeout=timeout)

    def agent_argv(self, broker_url: str, token_file: Path) -> list[str]:
        """This host's ``vifbroker agent`` options: its libvirt (read-only), its OVSDB."""
        return [
            "agent", "--libvirt-uri", self.uri, "--ovs-db", self.ovs_db,
            "--host", self.name, "--broker", broker_url, "--token-file", str(token_file),
        ]  # fmt: skip

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.root})"

    # -- lifecycle --

    def start(self) -> None:
        for sub in BINDS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._start_ovs()
        self._prepare_libvirt_config()
        self._start_libvirtd()

    def stop(self) -> None:
        """Tear down everything this host started; safe to call on a half-started host."""
        errors: list[str] = []
        for step in (self._stop_libvirtd, self._stop_ovs):
            try:
                step()
            except Exception as exc:
                errors.append(f"{step.__name__}: {exc}")
        if errors:
            raise HarnessError(f"{self.name} teardown: {'; '.join(errors)}")

    def _start_ovs(self) -> None:
        # Both daemons stay our children (no --detach): we know their PIDs
        # and reap them ourselves, so no zombie waits for init.
        d, env = self.ovs_dir, self._ovs_env()
        run(["ovsdb-tool", "create", str(d / "conf.db"), str(OVS_SCHEMA)])
        self._spawn_ovs(
            "ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d}/db.sock",
            f"--unixctl={d}/ovsdb-server.ctl", env=env,
        )  # fmt: skip
        wait_for((d / "db.sock").exists, 20, f"{self.name}: ovsdb-server socket")
        run(["ovs-vsctl", f"--db={self.ovs_db}", "--no-wait", "init"])
        extra = ["--enable-dummy=override"] if self.dummy_datapath else []
        self._spawn_ovs(
            "ovs-vswitchd", self.ovs_db, f"--unixctl={d}/ovs-vswitchd.ctl", *extra, env=env
        )
        # Without --no-wait, add-br returns once ovs-vswitchd has applied it:
        # that is the proof vswitchd is up.
        self.vsctl("add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev")
        if not self.dummy_datapath:
            wait_for(
                Path(f"/sys/class/net/{BRIDGE}").exists, 20, f"{self.name}: kernel tap {BRIDGE}"
            )
        error = self.vsctl("--if-exists", "get", "Interface", BRIDGE, "error").strip()
        if error not in ("", "[]"):
            raise HarnessError(f"{self.name}: ovs-vswitchd could not create {BRIDGE}: {error}")

    def _spawn_ovs(self, daemon: str, *args: str, env: dict[str, str]) -> None:
        d = self.ovs_dir
        with (d / f"{daemon}.stderr").open("wb") as err:
            proc = subprocess.Popen(
                [daemon, *args, f"--pidfile={d}/{daemon}.pid", "--no-chdir",
                 f"--log-file={d}/{daemon}.log"],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                start_new_session=True,
            )  # fmt: skip
        self.ovs_procs[daemon] = proc

    def _stop_ovs(self) -> None:
        vswitchd = self.ovs_procs.get("ovs-vswitchd")
        try:
            if vswitchd is not None and vswitchd.poll() is None:
                # The netdev datapath's kernel tap outlives ovs-vswitchd: delete the
                # bridge while vswitchd still runs, so it removes the tap itself.
                self.vsctl("--if-exists", "del-br", BRIDGE)
                if not self.dummy_datapath:
                    wait_for(
                        lambda: not Path(f"/sys/class/net/{BRIDGE}").exists(),
                        60, f"{self.name}: kernel tap {BRIDGE} removed",
                    )  # fmt: skip
        finally:
            # Even when the tap lingers, the daemons go: nothing outlives the run.
            self._terminate_ovs()

    def _terminate_ovs(self) -> None:
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            proc = self.ovs_procs.pop(daemon, None)
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def _prepare_libvirt_config(self) -> None:
        write_libvirt_config(
            self.root / "etc", migration_ports=self.migration_ports, tcp_port=self.tcp_port,
            host_uuid=self.host_uuid, hooks=self.hooks,
        )  # fmt: skip

    def _start_libvirtd(self) -> None:
        # /run becomes a private tmpfs first, so the mount points are created
        # there and never on the real host.
        script = ["set -e", "mount -t tmpfs -o mode=0755 vifbroker-run /run"]
        for sub, target in BINDS.items():
            script += [f"mkdir -p {target}", f"mount --bind {self.root / sub} {target}"]
        script.append(f"exec libvirtd --listen --pid-file {self.root}/libvirtd.pid")
        env = {
            **os.environ,
            "OVS_RUNDIR": "/run/openvswitch",
            "OVS_DBDIR": "/run/openvswitch",
            "LIBVIRT_DEFAULT_URI": "qemu:///system",
        }
        with (self.root / "libvirtd.stderr").open("wb") as err:
            self.libvirtd = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env,
                start_new_session=True,
            )  # fmt: skip
        proc = self.libvirtd

        def ready() -> bool:
            if proc.poll() is not None:
                raise HarnessError(
                    f"{self.name}: libvirtd exited {proc.returncode}: "
                    + (self.root / "libvirtd.stderr").read_text()[-2000:]
                )
            try:
                self.virsh("version", timeout=10)
            except HarnessError:
                return False
            return True

        wait_for(ready, 60, f"{self.name}: libvirtd answering on {self.uri}")
        self.mnt_ns = os.readlink(f"/proc/{proc.pid}/ns/mnt")
        if self.mnt_ns == os.readlink("/proc/self/ns/mnt"):
            raise HarnessError(f"{self.name}: libvirtd is not in its own mount namespace")

    def namespace_pids(self) -> list[int]:
        """Every process in this libvirtd's mount namespace (libvirtd and its QEMUs)."""
        if self.mnt_ns is None:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "ns" / "mnt") == self.mnt_ns:
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids

    def _stop_libvirtd(self) -> None:
        proc = self.libvirtd
        if proc is None:
            return
        if proc.poll() is None:
            try:
                for name in self.virsh("list", "--all", "--name", timeout=20).split():
                    self.destroy_domain(name)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        for pid in self.namespace_pids():
            kill_pid(pid)
        self.libvirtd = None

    # -- libvirt's own view --

    def log_offset(self) -> int:
        """Current size of libvirtd's log; pass it to :meth:`portdata_log` later."""
        try:
            return self.libvirtd_log.stat().st_size
        except FileNotFoundError:
            return 0

    def portdata_log(self, since: int = 0) -> list[str]:
        """libvirt's own PortData work after byte ``since`` of its debug log.

        The ``ovs-vsctl`` commands it ran that mention PortData, and the errors
        and warnings about port/network data: evidence of what its in-band carry
        did, for a human to read (not to assert on: the wording is libvirt's).
        """
        with self.libvirtd_log.open("rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
        found = []
        for line in text.splitlines():
            if "About to run ovs-vsctl" in line and "PortData" in line:
                found.append(line.split("About to run ", 1)[1])
            elif (" error : " in line or " warning : " in line) and (
                "port data" in line or "network data" in line
            ):
                found.append(line.split(" : ", 1)[1])
        return found

    # -- domains and ports --

    def destroy_domain(self, name: str) -> None:
        """Destroy and undefine ``name`` if this host has it."""
        if name not in self.virsh("list", "--all", "--name").split():
            return
        if self.virsh("domstate", name).strip() != "shut off":
            self.virsh("destroy", name)
        if name in self.virsh("list", "--all", "--name").split():
            self.virsh("undefine", name)

    def has_domain(self, name: str) -> bool:
        return name in self.virsh("list", "--all", "--name").split()

    def domstate(self, name: str) -> str:
        return self.virsh("domstate", name).strip()

    def ovs_ports(self) -> list[OvsPort]:
        out = self.vsctl("--format=json", "--columns=_uuid,name,external_ids", "list", "Interface")
        table = json.loads(out)
        ports = []
        for (_, row_uuid), name, (_, pairs) in table["data"]:
            ports.append(OvsPort(row_uuid, name, dict(pairs)))
        return ports

    def ovs_port(self, vm_uuid: str, mac: str) -> OvsPort | None:
        """The Interface libvirt created for NIC ``mac`` of domain ``vm_uuid``, if any."""
        found = [
            p for p in self.ovs_ports()
            if p.external_ids.get("vm-id") == vm_uuid
            and p.external_ids.get("attached-mac", "").lower() == mac.lower()
        ]  # fmt: skip
        if len(found) > 1:
            raise HarnessError(f"{self.name}: {len(found)} ports for {vm_uuid} {mac}")
        return found[0] if found else None

    def set_portdata(self, guest: Guest, mac: str, value: str) -> OvsPort:
        """Write PortData on this host's port of ``guest``'s NIC ``mac``; return the port."""
        port = self.ovs_port(guest.uuid, mac)
        if port is None:
            raise HarnessError(f"{self.name}: no OVS port for {guest.name} {mac}")
        # json.dumps as ONE argv element: every UTF-8 value round-trips exactly.
        self.vsctl("set", "Interface", port.uuid, f"external_ids:PortData={json.dumps(value)}")
        return port

    def define_and_start(self, guest: Guest, *, paused: bool = False) -> None:
        xml = self.root / f"{guest.name}.xml"
        xml.write_text(domain_xml(guest))
        self.virsh("define", str(xml))
        self.virsh("start", guest.name, *(["--paused"] if paused else []))
        for nic in guest.ovs_nics:
            if self.ovs_port(guest.uuid, nic.mac) is None:
                raise HarnessError(f"{self.name}: started {guest.name} but no port for {nic.mac}")


def migrate(
    guest: Guest, src: Host, dst: Host, *, extra: Sequence[str] = (), timeout: float = 180
) -> None:
    """Live-migrate ``guest`` from ``src`` to ``dst`` the way the recipe does.

    ``extra``: more ``virsh migrate`` options (``--bandwidth 1`` stretches the
    memory copy to about 1.5 s, a window to change port data in).
    """
    src.virsh(
        "migrate", "--live", "--persistent", "--undefinesource", guest.name, dst.tcp_uri,
        "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1", *extra,
        timeout=timeout,
    )  # fmt: skip


@dataclass
class Testbed:
    """Host A (netdev datapath) and host B (dummy datapath) under one directory."""

    __test__ = False  # not a pytest test class, despite the name

    root: Path
    hooks: dict[str, str] = field(default_factory=dict)
    a: Host = field(init=False)
    b: Host = field(init=False)
    lock: MachineLock = field(init=False)

    def __post_init__(self) -> None:
        self.lock = MachineLock()
        self.a = Host("A", self.root / "A", dummy_datapath=False, hooks=self.hooks)
        self.b = Host("B", self.root / "B", dummy_datapath=True, hooks=self.hooks)

    @property
    def hosts(self) -> tuple[Host, Host]:
        return (self.a, self.b)

    def start(self, lock_timeout: float = 900) -> None:
        self.lock.acquire(lock_timeout)
        try:
            # A tap left by a run that was killed (or still being unregistered
            # by the kernel) would make A's ovs-vswitchd fail to open its datapath.
            for tap in (BRIDGE, "ovs-netdev"):
                wait_for(
                    lambda t=tap: not Path(f"/sys/class/net/{t}").exists(),
                    60, f"kernel device {tap} from an earlier run gone",
                )  # fmt: skip
            for host in self.hosts:
                host.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        errors = []
        for host in reversed(self.hosts):
            try:
                host.stop()
            except Exception as exc:
                errors.append(str(exc))
        self.lock.release()
        if errors:
            raise HarnessError("; ".join(errors))
