"""Throwaway processes for ``vifbroker demo``: a broker and agents.

Every process is started here and stopped here by its PID; everything lives in
one temporary directory that the demo removes. The ovsdb-servers standing for
the hosts' switches are the openvswitch backend's sandboxes
(:mod:`vifbroker.backends.openvswitch.sandbox`): no OVS command line here.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from pathlib import Path


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
