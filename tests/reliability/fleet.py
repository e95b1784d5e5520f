"""Real processes for reliability tests: broker replicas, agents, and their teardown.

A :class:`Fleet` owns every process one test starts: ``vifbroker serve``
replicas on one store URL (``sqlite:///…`` or ``postgresql://…``) sharing one
token file, and ``vifbroker agent`` processes for hosts on throwaway
ovsdb-servers. It stops them all by PID when the test ends, whatever state the
test left them in (a replica the test SIGKILLed is simply already gone).

    fleet = Fleet(tmp_path, db=pg_dsn)
    a, b = await fleet.start_replica(), await fleet.start_replica()
    ...
    fleet.close()                 # the fixture does this

The load generators live in ``load``.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
from agent_harness import BrokerProcess, Host, terminate

from ovs_harness import OvsDb
from vifbroker.client import BrokerClient, RetryPolicy

HOSTS = ("host-a", "host-b", "host-c")


class Fleet:
    def __init__(self, root: Path, db: str | None = None, hosts: tuple[str, ...] = HOSTS) -> None:
        self.root = root
        # The first replica defines the database and the token file every other shares.
        self._origin = BrokerProcess(root / "replica-0", hosts=hosts, db=db)
        self.replicas: list[BrokerProcess] = []
        self.hosts: list[Host] = []
        self._clients: list[BrokerClient] = []

    @property
    def db(self) -> str:
        return self._origin.db

    def token(self, role: str, host: str | None = None) -> str:
        return self._origin.token(role, host)

    @property
    def urls(self) -> str:
        """Every replica's URL, comma-separated (what agents and controllers are given)."""
        return ",".join(r.url for r in self.replicas)

    # -- brokers -----------------------------------------------------------------------
    def replica(self) -> BrokerProcess:
        """A new replica on the fleet's database (not started)."""
        if not self.replicas:
            broker = self._origin
        else:
            broker = self._origin.replica(self.root / f"replica-{len(self.replicas)}")
        self.replicas.append(broker)
        return broker

    async def start_replica(self) -> BrokerProcess:
        broker = self.replica()
        await broker.start()
        return broker

    async def start_replicas(self, count: int) -> list[BrokerProcess]:
        """``count`` replicas started at once (their schema upgrades race, as in a rollout)."""
        brokers = [self.replica() for _ in range(count)]
        await asyncio.gather(*(b.start() for b in brokers))
        return brokers

    def controller(self, *brokers: BrokerProcess, attempts: int = 30) -> BrokerClient:
        """A controller client given ``brokers`` (default: every replica), retrying."""
        urls = [b.url for b in brokers or self.replicas]
        client = BrokerClient(
            urls, self.token("controller"),
            retry=RetryPolicy(attempts=attempts, base_delay=0.05, max_delay=0.5, timeout=15.0),
        )  # fmt: skip
        self._clients.append(client)
        return client

    # -- hosts and agents ----------------------------------------------------------------
    def host(self, name: str, ovs: OvsDb) -> Host:
        host = Host(name, ovs, self.root / name)
        self.hosts.append(host)
        return host

    def spawn_agent(self, host: Host, log_name: str = "agent.log") -> subprocess.Popen[bytes]:
        """``vifbroker agent`` for ``host``, given every replica's URL."""
        token = self._origin.token_file("agent", host.name)
        return host.spawn_agent(self._origin, token, log_name, urls=self.urls)

    # -- teardown -----------------------------------------------------------------------
    async def aclose(self) -> None:
        for client in self._clients:
            await client.close()
        self.close()

    def close(self) -> None:
        for host in self.hosts:
            if host.proc is not None:
                terminate(host.proc)
        for broker in self.replicas:
            broker.kill()


async def metric(session: aiohttp.ClientSession, broker: BrokerProcess, name: str) -> float:
    """One unlabelled sample of ``name`` from the broker's /metrics."""
    async with session.get(broker.url + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in {broker.url}/metrics")


async def status(session: aiohttp.ClientSession, url: str, timeout: float = 5.0) -> int:
    """HTTP status of GET ``url``; 0 when nothing answers."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def gather_cancelling(*tasks: asyncio.Task[Any]) -> list[Any]:
    """Await ``tasks``; if one fails, cancel the rest before raising."""
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
