"""vifbroker around the libvirt testbed: one broker, one agent per host, all processes.

The broker (``vifbroker serve``, SQLite) runs for the whole session. Agents
are ``vifbroker agent --libvirt-uri HOST.uri --ovs-db HOST.ovs_db`` processes
started outside the mount namespaces (the socket path reaches that host's
libvirtd, read-only), one pair per test so a test can run without them (the
"libvirt only" half of a side-by-side). Everything is stopped by PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from libvirt_harness import HarnessError, Host
from libvirt_proc import free_port, wait_for

from vifbroker.server.auth import Role, add_token


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM by PID, then SIGKILL; returns the exit code.

    An agent may take its whole drain (``drain_timeout``, 10 s by default) and
    then close its monitors and libvirt connection: the deadline leaves room for
    that, so only a real hang ends in SIGKILL.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return int(proc.returncode)


class Broker:
    """``vifbroker serve`` on loopback; tokens for a controller and each host's agent."""

    def __init__(self, directory: Path, hosts: Sequence[str]) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tokens = self.dir / "tokens.toml"
        self.controller_token = add_token(self.tokens, Role.CONTROLLER)
        self.token_files: dict[str, Path] = {}
        for host in hosts:
            path = self.dir / f"agent-{host}.token"
            path.write_text(add_token(self.tokens, Role.AGENT, host=host) + "\n")
            self.token_files[host] = path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.dir / "broker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        with (self.dir / "broker.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "vifbroker.cli", "serve",
                    "--listen", f"127.0.0.1:{self.port}",
                    "--db", f"sqlite:///{self.dir / 'broker.db'}",
                    "--tokens", str(self.tokens), "--state-dir", str(self.dir / "state"),
                    # Controller tests are unaffected; agents may register (issue 10).
                    "--agent-migrations",
                ],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise HarnessError(f"broker exited: {(self.dir / 'broker.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_for(ready, 30, "broker /healthz")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


class AgentProc:
    """One host's ``vifbroker agent`` process and its log."""

    def __init__(
        self, host: Host, broker: Broker, log: Path, client: str, *, register: bool = False
    ) -> None:
        self.host = host
        self.log_path = log
        self.argv = [
            sys.executable, "-m", "vifbroker.cli",
            *host.agent_argv(broker.url, broker.token_files[host.name]),
            "--libvirt-client", client, "--poll-wait", "10", "--log-level", "DEBUG",
            *(["--register-migrations"] if register else []),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = _stop(self.proc)
        self.proc = None
        return code


class AgentPair:
    """Agents for hosts A and B, started on demand, stopped by PID."""

    def __init__(self, hosts: Sequence[Host], broker: Broker, directory: Path) -> None:
        self.hosts = list(hosts)
        self.broker = broker
        self.dir = directory
        self.agents: dict[str, AgentProc] = {}
        self._runs = 0

    @property
    def running(self) -> bool:
        return bool(self.agents)

    def start(self, client: str = "auto", *, register: bool = False) -> AgentPair:
        """Start both agents and wait for their heartbeats (``client``: --libvirt-client;
        ``register``: --register-migrations, no controller needed)."""
        self._runs += 1
        for host in self.hosts:
            log = self.dir / f"agent-{host.name}-{self._runs}.log"
            agent = AgentProc(host, self.broker, log, client, register=register)
            self.agents[host.name] = agent
            agent.start()
        # The broker remembers hosts from earlier tests, so the agents' own
        # logs say when this pair is up: polling its inbox and (libvirt-python)
        # subscribed to lifecycle events. `virsh event` prints no such line.
        for agent in self.agents.values():
            wait_for(
                lambda a=agent: _started(a, events=client != "virsh"),
                30, f"agent {agent.host.name} up",
            )  # fmt: skip
        return self

    def log(self, host: str) -> str:
        return self.agents[host].log()

    def stop(self) -> dict[str, int | None]:
        codes = {name: agent.stop() for name, agent in self.agents.items()}
        self.agents.clear()
        return codes


def _started(agent: AgentProc, *, events: bool) -> bool:
    if agent.proc is not None and agent.proc.poll() is not None:
        raise HarnessError(f"agent {agent.host.name} exited: {agent.log()[-3000:]}")
    text = agent.log()
    return "inbox from revision" in text and (
        not events or "following domain lifecycle events" in text
    )
