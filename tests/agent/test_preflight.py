"""Preflight against real agents heartbeating from real throwaway ovsdb-servers.

Hosts: ``ovs-host`` (Open vSwitch with br-int, port-data cap 1024), ``noop-host``
(only the noop backend), ``gone-host`` (reported once, then its agent stopped),
``down-host`` (its ovsdb-server is down), ``new-host`` (never reported). The
broker counts a host silent after 3 heartbeat intervals of 1 s.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from agent_harness import BrokerProcess, Host, running_broker

from ovs_harness import OvsDb
from testkit import mac, wait_until
from vifbroker.backends.openvswitch import OpenVSwitchBackend
from vifbroker.client import BrokerClient, Forbidden, RetryPolicy
from vifbroker.model import Interface
from vifbroker.model.codec import parse_interfaces
from vifbroker.model.preflight import Preflight

pytestmark = pytest.mark.ovs

HOSTS = ("ovs-host", "noop-host", "gone-host", "down-host", "new-host")
CAP = 1024
DOM = str(uuid.uuid4())
DOMAIN_XML = f"""<domain type='kvm'><name>web</name><uuid>{DOM}</uuid><devices>
<interface type='bridge'><mac address='{mac(1)}'/><source bridge='br-int'/>
  <virtualport type='openvswitch'><portdata>small</portdata></virtualport></interface>
<interface type='bridge'><mac address='{mac(2)}'/><source bridge='br-missing'/>
  <virtualport type='openvswitch'><portdata>x</portdata></virtualport></interface>
<interface type='bridge'><mac address='{mac(3)}'/><source bridge='br-int'/>
  <virtualport type='openvswitch'><portdata>{"y" * (CAP + 1)}</portdata></virtualport></interface>
<interface type='direct'><mac address='{mac(4)}'/><source dev='eth0' mode='bridge'/></interface>
</devices></domain>"""
CLEAN_XML = f"""<interfaces><interface type='bridge'><mac address='{mac(1)}'/>
<source bridge='br-int'/><virtualport type='openvswitch'/></interface></interfaces>"""


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[BrokerProcess]:
    env = {"VIFBROKER_HEARTBEAT_INTERVAL_SECONDS": "1"}
    async with running_broker(tmp_path / "broker", hosts=HOSTS, env=env) as proc:
        yield proc


@pytest.fixture
async def fleet(
    broker: BrokerProcess, tmp_path: Path, ovsdb_factory: Callable[[], OvsDb]
) -> AsyncIterator[dict[str, Host]]:
    hosts = {n: Host(n, ovsdb_factory(), tmp_path / n) for n in HOSTS[:4]}
    for host in hosts.values():
        host.ovs.add_bridge("br-int")
    ovs = hosts["ovs-host"]
    ovs.start_agent(
        broker,
        backend_objs=[OpenVSwitchBackend(db=ovs.ovs.db, no_wait=True, max_portdata=CAP)],
        heartbeat_interval=0.2,
    )
    hosts["noop-host"].start_agent(broker, backends=["noop"], heartbeat_interval=0.2)
    hosts["down-host"].ovs.stop()
    hosts["down-host"].start_agent(broker, heartbeat_interval=0.2)
    gone = hosts["gone-host"]
    gone.start_agent(broker, heartbeat_interval=0.2)
    async with client(broker) as ctl:

        async def everyone_reported() -> bool:
            return {h.name for h in await ctl.list_hosts()} >= set(HOSTS[:4])

        await wait_until(everyone_reported, timeout=20)
    await gone.stop_agent()
    try:
        yield hosts
    finally:
        for host in hosts.values():
            await host.stop_agent()


def client(
    broker: BrokerProcess, role: str = "controller", host: str | None = None
) -> BrokerClient:
    retry = RetryPolicy(attempts=20, base_delay=0.05, max_delay=0.5)
    return BrokerClient(broker.url, broker.token(role, host), retry=retry)


def verdicts(answer: Preflight) -> dict[str, tuple[str, str | None, str]]:
    return {v.mac: (v.verdict, v.backend, v.reason or "") for v in answer.verdicts}


def as_json(xml: str) -> list[Interface]:
    return parse_interfaces(xml.encode())


@pytest.mark.parametrize("encoding", ["xml", "json"])
@pytest.mark.parametrize("policy", ["skip", "fail"])
async def test_each_verdict_and_reason(
    broker: BrokerProcess, fleet: dict[str, Host], policy: str, encoding: str
) -> None:
    doc: str | list[Interface] = DOMAIN_XML if encoding == "xml" else as_json(DOMAIN_XML)
    mismatch = "skip" if policy == "skip" else "fail"
    async with client(broker) as ctl:
        ovs = await ctl.preflight("ovs-host", doc, on_backend_mismatch=policy)  # type: ignore[arg-type]
        noop = await ctl.preflight("noop-host", doc, on_backend_mismatch=policy)  # type: ignore[arg-type]
        down = await ctl.preflight("down-host", doc, on_backend_mismatch=policy)  # type: ignore[arg-type]
        new = await ctl.preflight("new-host", doc, on_backend_mismatch=policy)  # type: ignore[arg-type]

        async def gone_is_silent() -> bool:
            answer = await ctl.preflight("gone-host", doc, on_backend_mismatch=policy)  # type: ignore[arg-type]
            return not answer.reporting

        await wait_until(gone_is_silent, timeout=15)
        gone = await ctl.preflight("gone-host", doc, on_backend_mismatch=policy)  # type: ignore[arg-type]

    assert ovs.reporting and ovs.last_seen is not None
    got = verdicts(ovs)
    assert got[mac(1)] == ("ok", "openvswitch", "")
    assert got[mac(2)][:2] == ("fail", "openvswitch")
    assert "bridge br-missing does not exist on ovs-host (bridges: br-int)" in got[mac(2)][2]
    assert got[mac(3)][:2] == ("fail", "openvswitch")
    assert f"port data is {CAP + 1} bytes, above openvswitch's limit" in got[mac(3)][2]
    assert got[mac(4)][:2] == (mismatch, None)
    assert "no backend on ovs-host handles type=direct" in got[mac(4)][2]

    assert noop.reporting
    for verdict, backend, reason in verdicts(noop).values():
        assert (verdict, backend) == (mismatch, None)
        assert "(backends: noop)" in reason

    assert down.reporting
    down_ovs = [verdicts(down)[m] for m in (mac(1), mac(2), mac(3))]
    assert all(v[:2] == ("fail", "openvswitch") and "not reachable" in v[2] for v in down_ovs)

    for silent, why in ((gone, "has not reported for"), (new, "has never reported")):
        assert silent.reporting is False
        assert [v.verdict for v in silent.verdicts] == ["fail"] * 4
        assert all(why in (v.reason or "") for v in silent.verdicts)
    assert gone.last_seen is not None and new.last_seen is None


async def test_an_agent_may_not_ask_without_agent_migrations(
    broker: BrokerProcess, fleet: dict[str, Host]
) -> None:
    async with client(broker, "agent", "ovs-host") as agent:
        with pytest.raises(Forbidden):
            await agent.preflight("noop-host", CLEAN_XML)


async def run_cli(
    broker: BrokerProcess, tmp_path: Path, host: str, xml: str, *extra: str
) -> tuple[int, str]:
    """The command as a process, awaited: the in-process agents keep heartbeating."""
    doc = tmp_path / f"{host}.xml"
    doc.write_text(xml)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vifbroker.cli", "preflight", "--broker", broker.url,
        "--token-file", str(broker.token_file("controller")), "--to", host,
        "--domain-xml", str(doc), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_command_prints_a_table_and_fails_on_any_fail(
    broker: BrokerProcess, fleet: dict[str, Host], tmp_path: Path
) -> None:
    bad = await run_cli(broker, tmp_path, "ovs-host", DOMAIN_XML)
    good = await run_cli(broker, tmp_path, "ovs-host", CLEAN_XML)
    skipped = await run_cli(broker, tmp_path, "noop-host", CLEAN_XML)
    strict = await run_cli(
        broker, tmp_path, "noop-host", CLEAN_XML, "--on-backend-mismatch", "fail"
    )
    rc, as_doc = await run_cli(broker, tmp_path, "ovs-host", CLEAN_XML, "-o", "json")

    assert bad[0] == 1, bad[1]
    assert "host ovs-host: reporting" in bad[1]
    assert f"{mac(2)}  fail" in bad[1] and "bridge br-missing does not exist" in bad[1]
    assert good[0] == 0 and f"{mac(1)}  ok" in good[1], good[1]
    assert skipped[0] == 0 and f"{mac(1)}  skip" in skipped[1], skipped[1]
    assert strict[0] == 1
    assert rc == 0 and json.loads(as_doc)["verdicts"][0]["verdict"] == "ok"
