"""Throwaway processes for ``vifbroker demo``: a broker, ovsdb-servers, agents.

Every process is started here and stopped here by its PID; everything lives in
one temporary directory that the demo removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


class DemoError(RuntimeError):
    pass


async def run(*argv: str, stdin: bytes | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    if proc.returncode != 0:
        raise DemoError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} failed: {err.decode()}")
    return out.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_listening(port: int, proc: asyncio.subprocess.Process, what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if proc.returncode is not None:
                raise DemoError(f"{what} exited with status {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise DemoError(f"{what} is not listening on port {port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 15.0) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def vifbroker(*args: str, log: Path) -> asyncio.subprocess.Process:
    """Start ``vifbroker ARGS`` (this interpreter, this installation)."""
    with log.open("ab") as fh:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vifbroker.cli", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=fh, stderr=fh,
        )  # fmt: skip


class DemoOvs:
    """An ovsdb-server in ``directory`` (no ovs-vswitchd: every call uses --no-wait)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.pid: int | None = None

    @property
    def db(self) -> str:
        return f"unix:{self.dir / 'db.sock'}"

    async def start(self) -> None:
        self.dir.mkdir(parents=True)
        await run("ovsdb-tool", "create", str(self.dir / "conf.db"), str(SCHEMA))
        await run(
            "ovsdb-server", str(self.dir / "conf.db"),
            f"--remote=punix:{self.dir / 'db.sock'}", f"--pidfile={self.dir / 'pid'}",
            f"--unixctl={self.dir / 'ctl'}", "--detach", "--no-chdir",
            f"--log-file={self.dir / 'log'}",
        )  # fmt: skip
        self.pid = int((self.dir / "pid").read_text().strip())
        await self.vsctl("init")

    def stop(self) -> None:
        pid, self.pid = self.pid, None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    async def vsctl(self, *args: str) -> str:
        return await run("ovs-vsctl", f"--db={self.db}", "--no-wait", "--timeout=10", *args)

    async def add_port(self, tap: str, vm_id: str, mac: str, portdata: str | None) -> None:
        ids = [f"external_ids:vm-id={vm_id}", f"external_ids:attached-mac={mac}"]
        if portdata is not None:
            ids.append("external_ids:PortData=" + json.dumps(portdata, ensure_ascii=False))
        await self.vsctl(
            "--may-exist", "add-br", "br-int", "--", "add-port", "br-int", tap,
            "--", "set", "Interface", tap, *ids,
        )  # fmt: skip

    async def set_portdata(self, tap: str, portdata: str) -> None:
        await self.vsctl("set", "Interface", tap, "external_ids:PortData=" + json.dumps(portdata))

    async def portdata(self, tap: str) -> str | None:
        out = await self.vsctl(
            "--format=json", "--columns=external_ids", "find", "Interface", f"name={tap}"
        )
        rows = json.loads(out)["data"]
        if not rows:
            return None
        value = dict(rows[0][0][1]).get("PortData")
        return value if isinstance(value, str) else None
