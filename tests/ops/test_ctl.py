"""The operator CLI (``vifbroker migrations …``, ``hosts list``, ``--version``) as a
process against a real broker on loopback, set up through the Python client."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import subprocess
import sys
import tomllib
import uuid
from typing import Any

import pytest
from ops_harness import GUARD, Broker, free_port, one_line_error, vifbroker

from testkit import REPO, sigint_at_default
from vifbroker.client import BrokerClient
from vifbroker.model import BackendInfo, Interface, ResultIn, portdata_digest


def env_of(broker: Broker) -> dict[str, str]:
    return {
        "VIFBROKER_BROKER": broker.url,
        "VIFBROKER_TOKEN_FILE": str(broker.controller_token_file),
    }


def ctl(broker: Broker, *args: str) -> Any:
    """Run a CLI command with JSON output; its parsed stdout."""
    done = vifbroker(*args, "-o", "json", env=env_of(broker))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def vif(i: int, portdata: str) -> Interface:
    return Interface.model_validate({
        "mac": f"52:54:00:00:00:{i:02x}", "type": "bridge", "source": {"bridge": "br-int"},
        "virtualport": {"type": "openvswitch", "portdata": portdata},
    })  # fmt: skip


async def migration_with_results(client: BrokerClient, name: str) -> tuple[str, list[str]]:
    """A migration of 3 vifs: one applied with the right digest, one reported applied
    with a wrong digest (the broker counts it failed), one failed."""
    domain = str(uuid.uuid4())
    m = await client.create_migration(domain, "hv1", "hv2", domain_name=name)
    vifs = [vif(1, "pd-one"), vif(2, "pd-two"), vif(3, "pd-three")]
    await client.upload(domain, vifs)
    await client.post_results(m.id, [
        ResultIn(mac=vifs[0].mac, generation=1, status="applied", digest=portdata_digest("pd-one")),
        ResultIn(mac=vifs[1].mac, generation=1, status="applied", digest=portdata_digest("other")),
        ResultIn(mac=vifs[2].mac, generation=1, status="failed", detail="no such port"),
    ])  # fmt: skip
    return m.id, [v.mac for v in vifs]


def test_version_is_the_products() -> None:
    done = vifbroker("--version")
    assert done.returncode == 0
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert done.stdout.strip() == f"vifbroker {expected}"


async def test_list_filters_by_state_and_host(broker: Broker, controller: BrokerClient) -> None:
    failed_id, _ = await migration_with_results(controller, "vm-listed")
    other = await controller.create_migration(str(uuid.uuid4()), "hv7", "hv8")
    every = {m["id"]: m for m in ctl(broker, "migrations", "list")}
    assert every[failed_id]["state"] == "failed"
    assert every[other.id]["state"] == "pending"
    assert [m["id"] for m in ctl(broker, "migrations", "list", "--host", "hv8")] == [other.id]
    failed = ctl(broker, "migrations", "list", "--state", "failed")
    assert failed_id in {m["id"] for m in failed} and other.id not in {m["id"] for m in failed}
    table = vifbroker("migrations", "list", "--host", "hv8", "-o", "table", env=env_of(broker))
    header, row = table.stdout.splitlines()
    assert header.split() == ["ID", "DOMAIN", "SOURCE", "DESTINATION", "STATE", "VIFS", "UPDATED"]
    assert row.split()[:6] == [other.id, other.domain_uuid, "hv7", "hv8", "pending", "0/0"]


async def test_show_reports_each_vif_and_whether_its_digest_matches(
    broker: Broker, controller: BrokerClient
) -> None:
    mid, macs = await migration_with_results(controller, "vm-shown")
    doc = ctl(broker, "migrations", "show", mid)
    assert doc["migration"]["id"] == mid and doc["migration"]["state"] == "failed"
    rows = {r["mac"]: r for r in doc["interfaces"]}
    assert [(rows[m]["status"], rows[m]["digest"]) for m in macs] == [
        ("applied", "match"), ("failed", "mismatch"), ("failed", "-"),
    ]
    assert rows[macs[2]]["detail"] == "no such port"
    assert all(r["generation"] == 1 for r in rows.values())
    # A new generation of vif 1 waits for its own result: nothing to compare yet.
    m = await controller.get_migration(mid)
    await controller.upload(m.domain_uuid, [vif(1, "pd-one-v2")])
    rows = {r["mac"]: r for r in ctl(broker, "migrations", "show", mid)["interfaces"]}
    assert [rows[macs[0]][k] for k in ("generation", "applied", "status", "digest")] == [
        2, 1, "pending", "-",
    ]
    text = vifbroker("migrations", "show", mid, "-o", "table", env=env_of(broker)).stdout
    assert "id:" in text and mid in text and "no such port" in text and "mismatch" in text


async def test_complete_and_cancel(broker: Broker, controller: BrokerClient) -> None:
    done_id, macs = await migration_with_results(controller, "vm-completed")
    assert ctl(broker, "migrations", "complete", done_id)["state"] == "completed"
    rows = ctl(broker, "migrations", "show", done_id)["interfaces"]
    # Port data is purged on completion: nothing left to compare the digest with.
    assert {r["mac"]: r["digest"] for r in rows}[macs[0]] == "purged"
    other = await controller.create_migration(str(uuid.uuid4()), "hv1", "hv2")
    assert ctl(broker, "migrations", "cancel", other.id)["state"] == "cancelled"
    assert (await controller.get_migration(other.id)).state == "cancelled"
    # Completing a cancelled migration is refused by the broker: exit 1, one line.
    done = vifbroker("migrations", "complete", other.id, env=env_of(broker))
    assert done.returncode == 1
    assert "409" in one_line_error(done)
    missing = vifbroker("migrations", "cancel", "no-such-id", env=env_of(broker))
    assert missing.returncode == 1
    assert "no migration 'no-such-id'" in one_line_error(missing)


async def test_hosts_list_says_who_is_reporting(broker: Broker, controller: BrokerClient) -> None:
    await controller.heartbeat(
        "hv-listed", [BackendInfo(name="openvswitch"), BackendInfo(name="noop")],
        agent_version="9.9.9",
    )  # fmt: skip
    hosts = {h["name"]: h for h in ctl(broker, "hosts", "list")}
    host = hosts["hv-listed"]
    assert host["agent_version"] == "9.9.9"
    assert [b["name"] for b in host["backends"]] == ["openvswitch", "noop"]
    assert host["reporting"] is True and host["age_seconds"] >= 0
    stale = {h["name"]: h for h in ctl(broker, "hosts", "list", "--stale-after", "0")}
    assert stale["hv-listed"]["reporting"] is False
    table = vifbroker("hosts", "list", "-o", "table", env=env_of(broker)).stdout.splitlines()
    assert table[0].split() == [
        "NAME", "LAST_SEEN", "AGE", "AGENT_VERSION", "BACKENDS", "REPORTING",
    ]
    row = next(line.split() for line in table if line.startswith("hv-listed "))
    assert row[3:] == ["9.9.9", "openvswitch,noop", "yes"]


async def test_watch_prints_one_line_per_change(broker: Broker, controller: BrokerClient) -> None:
    with sigint_at_default():  # stopped below as Ctrl-C would, however the suite was started
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vifbroker.cli", "migrations", "watch", "-o", "json",
            "--host", "hv2", "--broker", broker.url,
            "--token-file", str(broker.controller_token_file),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    assert proc.stdout is not None
    try:
        # Another host's migration is filtered out (--host hv2).
        elsewhere = await controller.create_migration(str(uuid.uuid4()), "hv7", "hv8")
        domain = str(uuid.uuid4())
        m = await controller.create_migration(domain, "hv1", "hv2", domain_name="vm-watched")
        seen: list[str] = []
        others: list[str] = []

        async def until(state: str) -> None:
            while not seen or seen[-1] != state:
                line = await asyncio.wait_for(proc.stdout.readline(), GUARD)  # type: ignore[union-attr]
                assert line, "watch ended"
                doc = json.loads(line)
                if doc["id"] == m.id:
                    seen.append(doc["state"])
                else:
                    others.append(doc["id"])

        await until("pending")
        await controller.upload(domain, [vif(1, "pd")])
        await until("uploaded")
        await controller.cancel(m.id)
        await until("cancelled")
        assert seen == ["pending", "uploaded", "cancelled"]
        assert elsewhere.id not in others
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            rc = await asyncio.wait_for(proc.wait(), GUARD)
        except TimeoutError:
            proc.kill()  # never leave it behind
            await proc.wait()
            raise AssertionError(f"the watch ignored SIGINT for {GUARD}s") from None
    assert rc == 0
    assert b"Traceback" not in await proc.stderr.read()  # type: ignore[union-attr]


def test_table_is_the_default_on_a_terminal(broker: Broker) -> None:
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "vifbroker.cli", "hosts", "list"],
            stdout=follower, stderr=subprocess.PIPE, timeout=GUARD, check=False,
            env={**os.environ, **env_of(broker)},
        )  # fmt: skip
        os.close(follower)
        follower = -1
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert done.returncode == 0, done.stderr
    assert out.decode().splitlines()[0].split()[:2] == ["NAME", "LAST_SEEN"]
    # Not a terminal: JSON.
    assert isinstance(json.loads(vifbroker("hosts", "list", env=env_of(broker)).stdout), list)


@pytest.mark.parametrize(
    ("args", "env", "rc", "says"),
    [
        (["--broker", "http//nowhere"], {}, 2, "malformed broker URL"),
        (["--broker", "http://127.0.0.1:99999"], {}, 2, "malformed broker URL"),
        ([], {"VIFBROKER_BROKER": "ftp://x"}, 2, "malformed broker URL"),
        (["--token-file", "/nonexistent/token"], {}, 2, "cannot read token file"),
        ([], {"VIFBROKER_TOKEN_FILE": ""}, 2, "no token"),
        (["--timeout", "0"], {}, 2, "--timeout must be positive"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    broker: Broker, args: list[str], env: dict[str, str], rc: int, says: str
) -> None:
    done = vifbroker("migrations", "list", *args, env={**env_of(broker), **env})
    assert done.returncode == rc
    assert says in one_line_error(done)
    assert done.stdout == ""


def test_usage_errors_exit_2() -> None:
    assert vifbroker("migrations", "list", "--state", "nonsense").returncode == 2
    assert vifbroker("migrations").returncode == 2


def test_unreachable_broker_and_refused_token_exit_1(broker: Broker, tmp_path: Any) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    done = vifbroker("hosts", "list", env={**env_of(broker), "VIFBROKER_BROKER": down})
    assert done.returncode == 1
    assert one_line_error(done).startswith("vifbroker hosts list: broker unreachable")
    # A second URL that answers is used when the first is down.
    both = vifbroker("hosts", "list", "--broker", f"{down},{broker.url}", env=env_of(broker))
    assert both.returncode == 0, both.stderr
    bad = tmp_path / "bad.token"
    bad.write_text("not-a-token\n")
    done = vifbroker("hosts", "list", "--token-file", str(bad), env=env_of(broker))
    assert done.returncode == 1
    assert "refused the token" in one_line_error(done)
    agent = vifbroker("hosts", "list", "--token-file", str(broker.agent_token_file),
                      env=env_of(broker))  # fmt: skip
    assert agent.returncode == 1
    assert "403 forbidden" in one_line_error(agent)
