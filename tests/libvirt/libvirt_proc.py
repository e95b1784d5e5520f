"""Process plumbing for the libvirt testbed: commands, polling, ports, PIDs."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from testkit import free_port as free_port


class HarnessError(RuntimeError):
    """A command of the harness failed, or a condition was not met in time."""


def run(argv: Sequence[str], *, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{' '.join(argv)}: no answer within {timeout}s") from exc
    if proc.returncode != 0:
        raise HarnessError(
            f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}"
        )
    return proc.stdout


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``predicate`` until truthy (the harness is synchronous; tests may be async)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise HarnessError(f"{what}: not within {timeout}s")
        time.sleep(0.02)


def free_port_range(count: int) -> tuple[int, int]:
    """``count`` consecutive ports that are free now (for a migration port range)."""
    for _ in range(200):
        base = free_port()
        if base + count > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base, base + count - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise HarnessError(f"no {count} consecutive free ports")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (an exited child nobody reaped yet) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def kill_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; returns once the process is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not pid_alive(pid):
            return
    raise HarnessError(f"pid {pid} survived SIGKILL")


class MachineLock:
    """An exclusive ``flock`` on ``path``, shared by every testbed on this machine.

    Host A's kernel taps (``br-int``, ``ovs-netdev``) have fixed names in the one
    network namespace, so two test sessions at once (two engineers, or a CI run
    next to a local run) would take each other's taps. The second waits here.
    """

    def __init__(self, path: Path = Path("/tmp/vifbroker-libvirt-testbed.lock")) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise HarnessError(
                        f"another libvirt testbed held {self.path} for {timeout}s"
                    ) from None
                time.sleep(0.2)
                continue
            self._fd = fd
            return

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
