"""A throwaway ovsdb-server in a temporary directory, for tests and benchmarks.

No ovs-vswitchd runs beside it, so every ovs-vsctl call here passes
``--no-wait`` (otherwise it would wait forever for a reconfiguration).

Usage in tests::

    async def test_x(ovsdb):            # one server, started, stopped afterwards
        ovsdb.add_port("br-int", "vnet0", vm_id=UUID, mac="52:54:00:00:00:01")

    def test_y(ovsdb_factory):           # several: host A and host B
        a, b = ovsdb_factory(), ovsdb_factory()

The helpers are synchronous on purpose: a test sets up state, then exercises
async code; a blocking 5 ms subprocess in setup is simpler than a second API.
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

import pytest

from testkit import require_binary

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
REQUIRED = ("ovsdb-server", "ovsdb-tool", "ovs-vsctl", "ovsdb-client")


class OvsDbError(RuntimeError):
    pass


class OvsDb:
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
    def start(self) -> OvsDb:
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

    def restart(self) -> OvsDb:
        self.stop()
        return self.start()

    # -- helpers ---------------------------------------------------------------
    def vsctl(self, *args: str) -> str:
        """Run ``ovs-vsctl --no-wait ARGS`` against this server; return stdout."""
        return _run([self.vsctl_binary, f"--db={self.db}", "--no-wait", "--timeout=10", *args])

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
            raise OvsDbError(f"no Interface {name!r}")
        return dict(rows[0][0][1]).get("PortData")

    def del_port(self, name: str) -> None:
        self.vsctl("--if-exists", "del-port", name)


def _alive(pid: int) -> bool:
    # The detached server is not our child: once dead it stays a zombie until
    # the container's init reaps it (seconds, here), so a zombie counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise OvsDbError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


@contextlib.contextmanager
def ovsdb_servers() -> Iterator[Callable[[], OvsDb]]:
    """Yield a factory of started servers; stop them all on exit."""
    servers: list[OvsDb] = []
    with tempfile.TemporaryDirectory(prefix="vifbroker-ovsdb-") as tmp:

        def make() -> OvsDb:
            server = OvsDb(Path(tmp) / f"host{len(servers)}")
            servers.append(server)
            return server.start()

        try:
            yield make
        finally:
            for server in servers:
                server.stop()


@pytest.fixture
def ovsdb_factory() -> Iterator[Callable[[], OvsDb]]:
    """Make any number of throwaway servers (host A, host B, ...)."""
    require_binary(*REQUIRED)
    with ovsdb_servers() as make:
        yield make


@pytest.fixture
def ovsdb(ovsdb_factory: Callable[[], OvsDb]) -> OvsDb:
    """One started throwaway ovsdb-server."""
    return ovsdb_factory()
