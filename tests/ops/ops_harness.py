"""A real broker process on loopback for the operator tests, and a way to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from testkit import free_port
from vifbroker.server.auth import Role, add_token

GUARD = 60


def vifbroker(
    *args: str, env: dict[str, str] | None = None, drop_env: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``vifbroker ARGS`` as the operator runs it (a process, stdout not a terminal)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VIFBROKER_")}
    environ.update(env or {})
    for name in drop_env:
        environ.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "vifbroker.cli", *args],
        capture_output=True, text=True, timeout=GUARD, env=environ, check=False,
    )  # fmt: skip


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    return lines[0]


@dataclass
class Broker:
    url: str
    port: int
    directory: Path
    controller_token_file: Path
    agent_token_file: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(GUARD)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(GUARD)

    def log(self) -> str:
        return (self.directory / "broker.log").read_text(errors="replace")


def start_broker(directory: Path, *, extra_env: dict[str, str] | None = None) -> Broker:
    """``vifbroker serve`` with a controller and a host-``hv1`` agent token, until /healthz."""
    directory.mkdir(parents=True, exist_ok=True)
    tokens = directory / "tokens.toml"
    files = {}
    for name, role, host in (("controller", Role.CONTROLLER, None), ("agent", Role.AGENT, "hv1")):
        files[name] = directory / f"{name}.token"
        files[name].write_text(add_token(tokens, role, host=host) + "\n")
        files[name].chmod(0o600)
    port = free_port()
    with (directory / "broker.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vifbroker.cli", "serve", "--listen", f"127.0.0.1:{port}",
             "--tokens", str(tokens), "--state-dir", str(directory / "state")],
            stdout=log, stderr=log,
            env={**os.environ, "VIFBROKER_LOG_LEVEL": "INFO", **(extra_env or {})},
        )  # fmt: skip
    broker = Broker(
        f"http://127.0.0.1:{port}", port, directory, files["controller"], files["agent"], proc
    )
    deadline = time.monotonic() + GUARD
    while True:  # until the process answers (a condition, not a sleep)
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited: {broker.log()}")
        try:
            with urllib.request.urlopen(f"{broker.url}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return broker
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            broker.stop()
            raise RuntimeError("broker never became healthy")
        time.sleep(0.05)
