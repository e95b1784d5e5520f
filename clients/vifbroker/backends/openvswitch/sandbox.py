"""A throwaway ovsdb-server in a directory: for tests, benchmarks and ``vifbroker demo``.

It runs without root, kernel module or ovs-vswitchd, so every ovs-vsctl call
here passes ``--no-wait`` (otherwise it would wait forever for a
reconfiguration). The one place outside the backend proper that runs OVS
command lines; nothing in the agent's normal operation uses it.

Usage::

    with sandboxes() as make:            # any number, all stopped on exit
        a, b = make(), make()
        a.add_port("br-int", "vnet0", vm_id=UUID, mac="52:54:00:00:00:01")

The methods are synchronous on purpose (a 5 ms subprocess during setup);
async callers run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
#: the binaries a sandbox (and the backend against it) needs
REQUIRED = ("ovsdb-server", "ovsdb-tool", "ovs-vsctl", "ovsdb-client")


class SandboxError(RuntimeError):
    pass


class OvsSandbox:
    """One ovsdb-server with its database, socket, pidfile and log under ``directory``."""

    def __init__(self, directory: str | Path, *, vsctl: str = "ovs-vsctl") -> None:
        self.dir = Path(directory)
        self.vsctl_binary = vsctl
        self.pid: int | None = None

    # -- paths ---------------------------------------------------------------
    @property
    def sock(self) -> Path:
        return self.dir / "db.sock"

    @property
    def db(self) -> str:
        """The ``unix:`` URL to pass as ``--db=`` / the backend's ``db``."""
        return f"unix:{self.sock}"

    @property
    def running(self) -> bool:
        return self.pid is not None and _alive(self.pid)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> OvsSandbox:
        """Create the database if needed, start the server, ``init`` it."""
        if self.running:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "conf.db"
        fresh = not conf.exists()
        if fresh:
            _run(["ovsdb-tool", "create", str(conf), str(SCHEMA)])
        _run(
            [
                "ovsdb-server",
                str(conf),
                f"--remote=punix:{self.sock}",
                f"--pidfile={self.dir / 'pid'}",
                f"--unixctl={self.dir / 'ctl'}",
                "--detach",
                "--no-chdir",
                f"--log-file={self.dir / 'log'}",
            ]
        )
        # --detach returns once the server listens and has written its pidfile.
        self.pid = int((self.dir / "pid").read_text().strip())
        if fresh:
            self.vsctl("init")
        return self

    def stop(self) -> None:
        """Kill the server by pid and wait until it is gone (the DB file stays)."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.005)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # A SIGKILLed server leaves its socket behind; a stale one would make
        # clients report "connection refused" instead of "no such file".
        self.sock.unlink(missing_ok=True)

    def restart(self) -> OvsSandbox:
        self.stop()
        return self.start()

    # -- helpers ---------------------------------------------------------------
    def vsctl(self, *args: str) -> str:
        """Run ``ovs-vsctl --no-wait ARGS`` against this server; return stdout."""
        return _run([self.vsctl_binary, f"--db={self.db}", "--no-wait", "--timeout=10", *args])

    def add_bridge(self, bridge: str) -> None:
        self.vsctl("--may-exist", "add-br", bridge)

    def add_port(
        self,
        bridge: str,
        name: str,
        vm_id: str | None = None,
        mac: str | None = None,
        portdata: str | None = None,
        iface_id: str | None = None,
    ) -> None:
        """Add ``name`` to ``bridge`` (created if needed) the way libvirt does."""
        ids = []
        if mac is not None:
            ids.append(f"external_ids:attached-mac={mac}")
        if vm_id is not None:
            ids.append(f"external_ids:vm-id={vm_id}")
            ids.append(f"external_ids:iface-id={iface_id or name + '-' + vm_id[:8]}")
        if portdata is not None:
            ids.append("external_ids:PortData=" + json.dumps(portdata, ensure_ascii=False))
        argv = ["--may-exist", "add-br", bridge, "--", "add-port", bridge, name]
        if ids:
            argv += ["--", "set", "Interface", name, *ids]
        self.vsctl(*argv)

    def set_portdata(self, name: str, value: str) -> None:
        arg = "external_ids:PortData=" + json.dumps(value, ensure_ascii=False)
        self.vsctl("set", "Interface", name, arg)

    def get_portdata(self, name: str) -> str | None:
        """PortData of ``name`` read with ``find`` (JSON, no escaping rules), None if unset."""
        out = self.vsctl(
            "--format=json", "--columns=external_ids", "find", "Interface", f"name={name}"
        )
        rows = json.loads(out)["data"]
        if not rows:
            raise SandboxError(f"no Interface {name!r}")
        value = dict(rows[0][0][1]).get("PortData")
        return value if isinstance(value, str) else None

    def del_port(self, name: str) -> None:
        self.vsctl("--if-exists", "del-port", name)


def _alive(pid: int) -> bool:
    # The detached server is not our child: once dead it stays a zombie until
    # init reaps it (seconds, in a container), so a zombie counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _run(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"{argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        raise SandboxError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


@contextlib.contextmanager
def sandboxes(directory: str | Path | None = None) -> Iterator[Callable[[], OvsSandbox]]:
    """Yield a factory of started servers (in ``directory``, default a temporary
    one removed afterwards); stop them all on exit."""
    servers: list[OvsSandbox] = []
    with contextlib.ExitStack() as stack:
        root = (
            Path(directory)
            if directory is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vifbroker-ovsdb-")))
        )

        def make() -> OvsSandbox:
            server = OvsSandbox(root / f"host{len(servers)}")
            servers.append(server)
            return server.start()

        try:
            yield make
        finally:
            for server in servers:
                server.stop()
