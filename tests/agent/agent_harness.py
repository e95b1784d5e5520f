"""Real pieces for agent tests: a broker process, hypervisor "hosts", agents.

A :class:`Host` is a throwaway ovsdb-server plus a directory of domain XML
files (what ``virsh dumpxml`` would print); its agent runs either in-process
(an :class:`Agent` through the real client, cheap) or as a real
``vifbroker agent`` process (for SIGKILL/SIGTERM tests). Every process is
stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from ovs_harness import OvsDb
from testkit import free_port as free_port
from testkit import mac as mac
from vifbroker.agent.domainxml import DirectorySource
from vifbroker.agent.lifecycle import DomainEvent, DomainFeed
from vifbroker.agent.service import Agent
from vifbroker.agent.settings import AgentSettings
from vifbroker.agent.state import StateFile
from vifbroker.backends import Backend
from vifbroker.backends.openvswitch import OpenVSwitchBackend
from vifbroker.client import BrokerClient, RetryPolicy
from vifbroker.server.auth import Role, add_token

BRIDGE = "br-int"


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM by PID, wait; SIGKILL when it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


class BrokerProcess:
    """``vifbroker serve`` on loopback; its own SQLite file unless ``db`` names a store URL.

    ``replica(dir)`` makes another broker on the same database and token file
    (a second replica, or the same broker restarted elsewhere).
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        hosts: tuple[str, ...] = ("host-a", "host-b"),
        *,
        db: str | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """``args``: more ``serve`` flags; ``env``: more ``VIFBROKER_*`` settings."""
        self.dir = directory
        self.args = args
        self.env = env or {}
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tokens = self.dir / "tokens.toml"
        self.port = port or free_port()
        self.db = db or f"sqlite:///{self.dir / 'broker.db'}"
        self.proc: subprocess.Popen[bytes] | None = None
        # The broker reads its token file at start: every token is made up front.
        self._tokens = {("controller", None): add_token(self.tokens, Role.CONTROLLER)}
        for host in hosts:
            self._tokens[("agent", host)] = add_token(self.tokens, Role.AGENT, host=host)

    def replica(self, directory: Path, port: int | None = None) -> BrokerProcess:
        """Another broker (not started) on this one's database, with the same tokens."""
        other = copy.copy(self)
        other.dir, other.port, other.proc = directory, port or free_port(), None
        directory.mkdir(parents=True, exist_ok=True)
        return other

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, role: str, host: str | None = None) -> str:
        return self._tokens[(role, host if role == "agent" else None)]

    def token_file(self, role: str, host: str | None = None) -> Path:
        path = self.dir / f"{role}-{host or 'all'}.token"
        path.write_text(self.token(role, host) + "\n")
        return path

    async def start(self) -> None:
        log = (self.dir / "broker.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "vifbroker.cli", "serve",
                "--listen", f"127.0.0.1:{self.port}",
                "--db", self.db,
                "--tokens", str(self.tokens),
                "--state-dir", str(self.dir / "state"),
                *self.args,
            ],
            stdout=log, stderr=log, env={**os.environ, **self.env},
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 20
        while not await _listening(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited: {(self.dir / 'broker.log').read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("broker did not start listening")
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL by PID (a crash: nothing is flushed, nothing is closed) and reap it."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


async def requests_by_route(url: str) -> dict[str, int]:
    """Requests the broker at ``url`` answered so far, as ``"METHOD route"`` (from /metrics)."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("vifbroker_http_request_duration_seconds_count{"):
            labels, _, value = line.partition("} ")
            fields = dict(f.split("=", 1) for f in labels.split("{", 1)[1].split(","))
            key = f"{fields['method'].strip(chr(34))} {fields['route'].strip(chr(34))}"
            counts[key] = counts.get(key, 0) + int(float(value))
    return counts


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@dataclass
class Vif:
    mac: str
    tap: str
    portdata: str | None = None
    virtualport: str | None = "openvswitch"
    type: str = "bridge"


def domain_xml(uuid: str, name: str, vifs: list[Vif]) -> str:
    parts = []
    for v in vifs:
        vp = ""
        if v.virtualport:
            vp = f"<virtualport type={quoteattr(v.virtualport)}/>"
        source = (
            f"<source bridge='{BRIDGE}'/>" if v.type == "bridge"
            else "<source dev='eth0' mode='bridge'/>"
        )  # fmt: skip
        parts.append(
            f"<interface type={quoteattr(v.type)}><mac address={quoteattr(v.mac)}/>{source}"
            f"<target dev={quoteattr(v.tap)}/><model type='virtio'/>{vp}</interface>"
        )
    return (
        f"<domain type='kvm'><name>{escape(name)}</name><uuid>{uuid}</uuid>"
        f"<devices>{''.join(parts)}</devices></domain>"
    )


@dataclass
class Host:
    """One hypervisor: its OVSDB, its domain XML directory, its agent."""

    name: str
    ovs: OvsDb
    dir: Path
    agent_task: asyncio.Task[None] | None = None
    agent: Agent | None = None
    proc: subprocess.Popen[bytes] | None = None
    clients: list[BrokerClient] = field(default_factory=list)
    log_path: Path = Path("/nonexistent")

    @property
    def xml_dir(self) -> Path:
        path = self.dir / "domains"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    def define(self, uuid: str, vifs: list[Vif], *, plug: bool = True) -> None:
        """The domain runs here: its XML is readable and (``plug``) its OVS ports exist."""
        (self.xml_dir / f"{uuid}.xml").write_text(domain_xml(uuid, f"dom-{uuid[:8]}", vifs))
        if plug:
            for v in vifs:
                if v.virtualport == "openvswitch":
                    self.plug(uuid, v)

    def plug(self, uuid: str, vif: Vif) -> None:
        """Create the OVS port the way libvirt does on an incoming migration."""
        self.ovs.add_port(BRIDGE, vif.tap, vm_id=uuid, mac=vif.mac, portdata=vif.portdata)

    def portdata(self, tap: str) -> str | None:
        return self.ovs.get_portdata(tap)

    # -- in-process agent --------------------------------------------------------------
    def start_agent(
        self,
        broker: BrokerProcess,
        *,
        backends: list[str] | None = None,
        backend_objs: list[Backend] | None = None,
        feed: DomainFeed | None = None,
        heartbeat_interval: float = 30.0,
        register_migrations: bool = False,
    ) -> Agent:
        names = backends or ["openvswitch"]
        from vifbroker.backends.noop import NoopBackend

        objs = backend_objs or [
            OpenVSwitchBackend(db=self.ovs.db, no_wait=True) if n == "openvswitch"
            else NoopBackend()
            for n in names
        ]  # fmt: skip
        client = BrokerClient(
            broker.url,
            broker.token("agent", self.name),
            retry=RetryPolicy(attempts=50, base_delay=0.05, max_delay=0.5),
        )
        self.clients.append(client)
        settings = AgentSettings(
            host=self.name, poll_wait=10.0, heartbeat_interval=heartbeat_interval, port_grace=0.3,
            drain_timeout=5.0, register_migrations=register_migrations, leaving_window=4.0,
        )  # fmt: skip
        self.agent = Agent(
            client, objs, DirectorySource(self.xml_dir), StateFile(self.state_dir, self.name),
            settings, feed=feed,
        )  # fmt: skip
        self.agent_task = asyncio.create_task(self.agent.run())
        return self.agent

    async def stop_agent(self) -> None:
        if self.agent is not None and self.agent_task is not None:
            self.agent.stop()
            await asyncio.wait_for(self.agent_task, 30)
        self.agent = self.agent_task = None
        for client in self.clients:
            await client.close()
        self.clients.clear()

    # -- agent process -------------------------------------------------------------------
    def spawn_agent(
        self,
        broker: BrokerProcess,
        token_file: Path,
        log_name: str = "agent.log",
        *,
        urls: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        """Start ``vifbroker agent`` for this host; its output goes to ``DIR/log_name``.

        ``urls``: the ``--broker`` value (several replicas, comma-separated);
        default ``broker.url``. ``extra_args`` go to the agent as they are
        (e.g. ``("--ovs-driver", "native")``).
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / log_name
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "vifbroker.cli", "agent",
                "--broker", urls or broker.url, "--token-file", str(token_file),
                "--host", self.name, "--ovs-db", self.ovs.db, "--ovs-no-wait",
                "--domain-xml-dir", str(self.xml_dir), "--state-dir", str(self.state_dir),
                "--poll-wait", "10", "--log-level", "DEBUG", *extra_args,
            ],
            stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        log.close()
        return self.proc

    def agent_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class QueueFeed:
    """libvirt's lifecycle events as a test says they happen (the agent's DomainFeed seam)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[DomainEvent] = asyncio.Queue()

    async def events(self) -> AsyncIterator[DomainEvent]:
        while True:
            yield await self.queue.get()

    def say(self, domain: str, event: str, detail: str) -> None:
        self.queue.put_nowait(DomainEvent(domain, event, detail))


@contextlib.asynccontextmanager
async def running_agents(
    broker: BrokerProcess, xml_dir: Path, hosts: dict[str, tuple[list[Backend], StateFile]]
) -> AsyncIterator[list[Agent]]:
    """In-process agents, one per host (its backends and its state file), all reading
    domain XML from ``xml_dir``; stopped and their clients closed on exit."""
    agents: list[Agent] = []
    clients: list[BrokerClient] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for host, (backends, state) in hosts.items():
            clients.append(BrokerClient(broker.url, broker.token("agent", host)))
            agent = Agent(
                clients[-1], backends, DirectorySource(xml_dir), state,
                AgentSettings(host=host, poll_wait=5),
            )  # fmt: skip
            agents.append(agent)
            tasks.append(asyncio.create_task(agent.run()))
        yield agents
    finally:
        for agent in agents:
            agent.stop()
        await asyncio.gather(*tasks)
        for client in clients:
            await client.close()


@contextlib.asynccontextmanager
async def running_broker(directory: Path, **options: Any) -> AsyncIterator[BrokerProcess]:
    """A started ``BrokerProcess(directory, **options)``, stopped on exit."""
    proc = BrokerProcess(directory, **options)
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()
