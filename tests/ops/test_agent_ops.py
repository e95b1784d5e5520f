"""The agent configured like ``serve`` (environment + TOML, no flags) and its /metrics.

A real ``vifbroker agent`` process applies one vif to a throwaway ovsdb-server
for a migration created through the broker; its metrics endpoint then says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
from ops_harness import GUARD, Broker, free_port, one_line_error, vifbroker
from prometheus_client.parser import text_string_to_metric_families

from ovs_harness import OvsDb
from testkit import require_binary, wait_until
from vifbroker.agent.config import load_agent_config
from vifbroker.client import BrokerClient
from vifbroker.model import Interface

MAC = "52:54:00:0a:0b:0c"


def test_precedence_flags_then_environment_then_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text(
        'broker = "http://from-file:8080"\ntoken_file = "/etc/t"\nhost = "hv-file"\n'
        "poll_wait = 5\nbackends = [\"noop\"]\novs_db = \"unix:/file.sock\"\n"
    )  # fmt: skip
    monkeypatch.setenv("VIFBROKER_HOST", "hv-env")
    monkeypatch.setenv("VIFBROKER_BACKENDS", "openvswitch,noop")
    monkeypatch.setenv("VIFBROKER_OVS_DB", "unix:/env.sock")
    cfg = load_agent_config(toml, poll_wait=7.0)
    assert cfg.poll_wait == 7.0  # flag beats file
    assert cfg.host == "hv-env"  # environment beats file
    assert cfg.backends == ["openvswitch", "noop"]  # comma-separated in the environment
    assert cfg.broker == "http://from-file:8080"  # file beats default
    assert cfg.model_dump()["ovs_db"] == "unix:/env.sock"  # a backend's option, same rules
    assert cfg.heartbeat_interval == 15.0  # the default
    monkeypatch.setenv("VIFBROKER_CONFIG", str(toml))
    assert load_agent_config().broker == "http://from-file:8080"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "broker (VIFBROKER_BROKER): Field required"),
        ({"VIFBROKER_BROKER": "http://b:1", "VIFBROKER_TOKEN_FILE": "/t",
          "VIFBROKER_POLL_WAIT": "soon"}, "poll_wait (VIFBROKER_POLL_WAIT)"),
        ({"VIFBROKER_BROKER": "http://b:1", "VIFBROKER_TOKEN_FILE": "/t",
          "VIFBROKER_HOST": "not a host"}, "host (VIFBROKER_HOST)"),
        ({"VIFBROKER_BROKER": "http://b:1", "VIFBROKER_TOKEN_FILE": "/t",
          "VIFBROKER_METRICS_LISTEN": "9000"}, "metrics_listen (VIFBROKER_METRICS_LISTEN)"),
    ],
)  # fmt: skip
def test_a_bad_agent_setting_is_one_line_and_exit_2(env: dict[str, str], says: str) -> None:
    done = vifbroker("agent", env=env)
    assert done.returncode == 2
    assert says in one_line_error(done)


def domain_xml(domain: str) -> str:
    return (
        f"<domain type='kvm'><name>vm-ops</name><uuid>{domain}</uuid><devices>"
        f"<interface type='bridge'><mac address='{MAC}'/><source bridge='br-int'/>"
        "<target dev='vnet9'/><virtualport type='openvswitch'/></interface>"
        "</devices></domain>"
    )


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_agent_from_environment_and_toml_applies_and_reports_metrics(
    broker: Broker, controller: BrokerClient, ovsdb: OvsDb, tmp_path: Path
) -> None:
    require_binary("ovsdb-server", "ovs-vsctl")
    domain = str(uuid.uuid4())
    xml_dir = tmp_path / "domains"
    xml_dir.mkdir()
    (xml_dir / f"{domain}.xml").write_text(domain_xml(domain))
    ovsdb.add_port("br-int", "vnet9", vm_id=domain, mac=MAC)
    port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'host = "hv1"\nbackends = ["openvswitch"]\ndomain_xml_dir = "{xml_dir}"\n'
        f'ovs_db = "{ovsdb.db}"\novs_no_wait = true\nmetrics_listen = "127.0.0.1:{port}"\n'
        'heartbeat_interval = 1\npoll_wait = 5\nlog_format = "json"\n'
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIFBROKER_")}
    env |= {
        "VIFBROKER_BROKER": broker.url,
        "VIFBROKER_TOKEN_FILE": str(broker.agent_token_file),
        "VIFBROKER_CONFIG": str(config),
        "VIFBROKER_POLWAIT": "3",  # a typo: warned about
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "vifbroker.cli", "agent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        async def reported() -> bool:
            return any(h.name == "hv1" for h in await controller.list_hosts())

        await wait_until(reported, timeout=GUARD)
        (host,) = [h for h in await controller.list_hosts() if h.name == "hv1"]
        assert [b.name for b in host.backends] == ["openvswitch"]
        m = await controller.create_migration(domain, "hv0", "hv1")
        vif = Interface.model_validate({
            "mac": MAC, "type": "bridge", "source": {"bridge": "br-int"},
            "virtualport": {"type": "openvswitch", "portdata": "pd-ops"},
        })  # fmt: skip
        await controller.upload(domain, [vif])
        done = await controller.wait_applied(m.id, GUARD)
        assert done.state == "applied"
        assert ovsdb.get_portdata("vnet9") == "pd-ops"
        s = await scrape(f"http://127.0.0.1:{port}/metrics")
        applies = s[("vifbroker_agent_applies_total",
                     (("backend", "openvswitch"), ("outcome", "applied")))]  # fmt: skip
        assert applies == 1
        assert s[("vifbroker_agent_apply_duration_seconds_count",
                  (("backend", "openvswitch"),))] == 1  # fmt: skip
        assert s[("vifbroker_agent_broker_reachable", ())] == 1
        assert s[("vifbroker_agent_broker_last_contact_timestamp_seconds", ())] > 0
        assert ("vifbroker_agent_queue_depth", ()) in s
        assert ("vifbroker_agent_backend_errors_total", (("backend", "openvswitch"),)) not in s
        assert any(name == "vifbroker_agent_build_info" for name, _ in s)
        assert ("process_resident_memory_bytes", ()) in s
    finally:
        proc.terminate()
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=GUARD)
    assert proc.returncode == 0, stderr
    assert "VIFBROKER_POLWAIT is not a setting of vifbroker agent" in stderr
    assert "Traceback" not in stderr
    # JSON lines, each with this agent's host as a key (logs of many agents join on it).
    lines = [json.loads(ln) for ln in stderr.splitlines() if ln.strip()]
    assert lines and all(doc["host"] == "hv1" for doc in lines)


def test_serve_warns_about_an_unknown_variable(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vifbroker.cli", "serve", "--state-dir", str(tmp_path),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("VIFBROKER_")},
             "VIFBROKER_LISTNE": "x", "VIFBROKER_LOG_FORMAT": "text"},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = ""
        while "listening on" not in seen:
            line = proc.stderr.readline()
            assert line, seen
            seen += line
    finally:
        proc.terminate()
        proc.communicate(timeout=GUARD)
    assert "VIFBROKER_LISTNE is not a setting of vifbroker serve (ignored)" in seen


def test_agent_metrics_port_in_use_is_one_line_and_exit_1(broker: Broker, tmp_path: Path) -> None:
    (tmp_path / "domains").mkdir()
    done = vifbroker(
        "agent", "--host", "hv1", "--backend", "noop",
        "--domain-xml-dir", str(tmp_path / "domains"),
        "--metrics-listen", f"127.0.0.1:{broker.port}",  # the broker holds it
        env={"VIFBROKER_BROKER": broker.url, "VIFBROKER_TOKEN_FILE": str(broker.agent_token_file),
             "VIFBROKER_LOG_LEVEL": "ERROR"},
    )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{broker.port}" in one_line_error(done)
