"""A real ``vifbroker serve`` process and a ``/healthz`` poller process, for the
responsiveness bound of issue 8 (every /healthz under 100 ms while attacked).

Both run as their own processes so that what the test does to build and send
its bodies costs them nothing; as root they run at a raised priority
(``nice -20``) so that the bound measures the broker, not the other load of a
shared 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from testkit import wait_until
from vifbroker.server.auth import Role, add_token

PRIORITY = -20  # a nice value; only root may raise priority


def _priority() -> None:
    if os.geteuid() == 0:
        os.nice(PRIORITY)


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    url: str
    tokens: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes]
    token_file: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def auth(self, who: str = "controller") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@contextlib.asynccontextmanager
async def served_broker(
    directory: Path,
    env: Mapping[str, str] | None = None,
    agents: tuple[str, ...] = ("src", "dst", "other"),
    args: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[Served]:
    """``vifbroker serve`` on a free loopback port with a controller and agent tokens."""
    token_file = directory / "tokens.toml"
    tokens = {"controller": add_token(token_file, Role.CONTROLLER)}
    for host in agents:
        tokens[host] = add_token(token_file, Role.AGENT, host=host)
    port = _port()
    log = directory / "broker.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "vifbroker.cli", "serve",
             "--listen", f"127.0.0.1:{port}", "--state-dir", str(directory / "state"),
             "--tokens", str(token_file), *args],
            stdout=out, stderr=out, preexec_fn=_priority,
            env={**os.environ, "VIFBROKER_LOG_LEVEL": "WARNING", **(env or {})},
        )  # fmt: skip
    scheme = "https" if tls else "http"
    served = Served(f"{scheme}://127.0.0.1:{port}", tokens, log, proc, token_file)
    try:
        async with aiohttp.ClientSession() as session:

            async def up() -> bool:
                assert proc.poll() is None, log.read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(served.url + "/healthz", ssl=tls or True) as resp:
                        return resp.status == 200
                return False

            await wait_until(up, timeout=30)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# The poller: GET /healthz on one keep-alive connection, 100 times a second,
# until its stdin closes; then one JSON line of what it saw.
_POLLER = r"""
import http.client, json, select, sys, time
host, port = sys.argv[1], int(sys.argv[2])
conn = http.client.HTTPConnection(host, port, timeout=30)
worst, count, slow, errors = 0.0, 0, [], 0
while not select.select([sys.stdin], [], [], 0.01)[0]:
    start = time.perf_counter()
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse(); resp.read()
        ok = resp.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
        conn.close(); conn = http.client.HTTPConnection(host, port, timeout=30)
    ms = (time.perf_counter() - start) * 1000
    if not ok:
        errors += 1
    count += 1
    worst = max(worst, ms)
    if ms >= 100:
        slow.append((round(time.time() - ms / 1000, 3), round(ms, 1)))
print(json.dumps({"count": count, "worst_ms": round(worst, 2), "slow_ms": slow, "errors": errors}))
"""


@dataclass
class PollStats:
    count: int
    worst_ms: float
    slow_ms: list[tuple[float, float]]  # (wall-clock start, milliseconds)
    errors: int


class HealthzPoller:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _POLLER, host, port],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=_priority,
        )  # fmt: skip

    def stop(self) -> PollStats:
        out, _ = self.proc.communicate(b"stop\n", timeout=60)
        return PollStats(**json.loads(out))


@contextlib.contextmanager
def healthz_poller(url: str) -> Any:
    poller = HealthzPoller(url)
    try:
        yield poller
    finally:
        if poller.proc.poll() is None:
            poller.proc.kill()
            poller.proc.wait()
