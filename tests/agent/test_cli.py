"""The host-side commands as an operator runs them: push, demo, bad agent options."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from agent_harness import BrokerProcess, Vif, domain_xml, mac

from testkit import require_binary
from vifbroker.client import BrokerClient
from vifbroker.model import MigrationState

CLI = [sys.executable, "-m", "vifbroker.cli"]


def vifbroker(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, timeout=120)


async def test_push_creates_the_migration_and_uploads_the_domain_xml(
    broker_proc: BrokerProcess, controller: BrokerClient, tmp_path: Path
) -> None:
    dom = str(uuid.uuid4())
    xml = domain_xml(dom, "web-7", [Vif(mac(1), "vnet0"), Vif(mac(2), "vnet1")])
    xml = xml.replace(
        '<virtualport type="openvswitch"/>',
        "<virtualport type='openvswitch'><portdata>pushed &amp; \"quoted\"</portdata>"
        "</virtualport>",
        1,
    )
    token = broker_proc.token_file("controller")

    done = vifbroker(
        "push", "--broker", broker_proc.url, "--token-file", str(token), "--domain-xml", "-",
        "--to", "host-b", "--from", "host-a", "--migration-id", "push-1", stdin=xml,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["migration"] == "push-1"
    assert [i["generation"] for i in out["interfaces"]] == [1, 1]
    m = await controller.get_migration("push-1")
    assert (m.domain_uuid, m.domain_name, m.source_host, m.destination_host) == (
        dom,
        "web-7",
        "host-a",
        "host-b",
    )
    assert m.state == MigrationState.UPLOADED
    rec = await controller.get_interface(dom, mac(1))
    assert rec.interface is not None and rec.interface.portdata == 'pushed & "quoted"'


def test_push_without_a_domain_uuid_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text("x")
    done = vifbroker(
        "push", "--broker", "http://127.0.0.1:9", "--token-file", str(token),
        "--domain-xml", "-", stdin="<interfaces><interface type='bridge'>"
        "<mac address='52:54:00:00:00:01'/></interface></interfaces>",
    )  # fmt: skip
    assert done.returncode == 2
    assert "no domain UUID" in done.stderr


def test_agent_with_unknown_backend_exits_2(tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text("x")
    done = vifbroker(
        "agent", "--broker", "http://127.0.0.1:9", "--token-file", str(token),
        "--host", "h1", "--backend", "no-such-backend",
    )  # fmt: skip
    assert done.returncode == 2
    assert "no-such-backend" in done.stderr


def _logs_of(stderr: str) -> str:
    """The demo's own logs (it keeps them with --keep), for a failure message."""
    m = re.search(r"kept (\S+)", stderr)
    if m is None:
        return stderr[-3000:]
    tmp = Path(m.group(1))
    text = "".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}\n"
                   for p in sorted(tmp.glob("*.log")))  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)
    return stderr[-2000:] + text


@pytest.mark.ovs
def test_demo_migrates_and_prints_the_table() -> None:
    require_binary("ovsdb-server", "ovsdb-tool", "ovs-vsctl", "ovsdb-client")
    done = vifbroker("demo", "--domains", "2", "--vifs", "2", "--keep")
    logs = _logs_of(done.stderr)

    assert done.returncode == 0, logs
    lines = done.stdout.splitlines()
    assert lines[0] == "2 migrations: applied"
    table = [line for line in lines if re.match(r"^[0-9a-f]{8}  ", line)]
    assert len(table) == 5  # 2 x 2 OVS vifs + one macvtap
    assert sum(" applied " in line for line in table) == 4
    assert sum(" skipped " in line for line in table) == 1
    assert "all port data arrived byte-exactly" in lines
