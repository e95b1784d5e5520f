"""docs/operations.md: every `runbook:` block runs, as written, against a real broker
(STATE, TOKENS, BACKUP pointed at temporary directories), and does what it says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ops_harness import GUARD, Broker, start_broker, vifbroker

from testkit import REPO, require_binary
from vifbroker.client import BrokerClient, RetryPolicy
from vifbroker.model import Interface, ResultIn
from vifbroker.server.auth import Unauthorized, load_tokens

DOC = (REPO / "docs" / "operations.md").read_text()
BLOCKS = dict(re.findall(r"<!-- runbook:(\S+) -->\n```sh\n(.*?)```", DOC, re.S))


def run(name: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Block ``name`` under ``bash -euo pipefail``; it must succeed."""
    require_binary("curl")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", BLOCKS[name]], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=GUARD, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"runbook:{name} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture
def env(broker: Broker, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIFBROKER_")}
    return base | {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "STATE": str(broker.directory / "state"),
        "TOKENS": str(broker.directory / "tokens.toml"),
        "BACKUP": str(tmp_path / "backup"),
        "VIFBROKER_BROKER": broker.url,
        "VIFBROKER_TOKEN_FILE": str(broker.controller_token_file),
    }


def test_every_block_is_tested() -> None:
    tested = set(re.findall(r'run\("([a-z-]+)"', Path(__file__).read_text()))
    assert set(BLOCKS) == tested


def test_checks_after_install_and_upgrade(env: dict[str, str], tmp_path: Path) -> None:
    out = run("check-broker", env, tmp_path).stdout
    assert out.startswith("vifbroker ") and '"status":"ready"' in out.replace(" ", "")
    assert "NAME" in out and "REPORTING" in out
    out = run("check-upgrade", env, tmp_path).stdout
    assert "vifbroker_build_info{" in out


async def migration(broker: Broker, *, result: str | None) -> str:
    token = broker.controller_token_file.read_text().strip()
    async with BrokerClient(broker.url, token, retry=RetryPolicy(attempts=3)) as client:
        domain = str(uuid.uuid4())
        m = await client.create_migration(domain, "hv1", "hv2")
        vif = Interface.model_validate({"mac": "52:54:00:00:99:01", "type": "bridge"})
        await client.upload(domain, [vif])
        if result is not None:
            detail = "gave up at the migration's deadline: no local port for vm-id x"
            await client.post_results(m.id, [
                ResultIn(mac=vif.mac, generation=1, status="failed", detail=detail),
            ])  # fmt: skip
        return m.id


async def test_metrics_show_handoff(broker: Broker, env: dict[str, str], tmp_path: Path) -> None:
    await migration(broker, result="failed")
    out = run("metrics", env, tmp_path).stdout
    assert "vifbroker_ready 1.0" in out
    assert 'vifbroker_results_total{reason="deadline",status="failed"}' in out


async def test_stuck_then_cancel(broker: Broker, env: dict[str, str], tmp_path: Path) -> None:
    mid = await migration(broker, result=None)
    out = run("stuck", env | {"ID": mid}, tmp_path).stdout
    assert mid in out and "uploaded" in out and "pending" in out
    run("cancel", env | {"ID": mid}, tmp_path)
    shown = json.loads(vifbroker("migrations", "show", mid, "-o", "json", env=env).stdout)
    assert shown["migration"]["state"] == "cancelled"


async def test_failed_apply(broker: Broker, env: dict[str, str], tmp_path: Path) -> None:
    mid = await migration(broker, result="failed")
    out = run("failed", env | {"ID": mid}, tmp_path).stdout
    assert mid in out
    assert "52:54:00:00:99:01 failed - gave up at the migration's deadline" in out


def test_token_add_rotate_revoke(env: dict[str, str], tmp_path: Path) -> None:
    tokens = Path(env["TOKENS"])
    work = tmp_path / "tokens"
    work.mkdir()
    scratch = env | {"TOKENS": str(work / "tokens.toml")}  # the running broker's file stays
    (work / "tokens.toml").write_text(tokens.read_text())
    run("token-add", scratch, work)
    run("token-rotate", scratch, work)
    old = (work / "agent-hv1.token").read_text().strip()
    new = (work / "agent-hv1-next.token").read_text().strip()
    registry = load_tokens(work / "tokens.toml")
    assert registry.authenticate(old).host == registry.authenticate(new).host == "hv1"
    run("token-revoke", scratch, work)
    registry = load_tokens(work / "tokens.toml")
    with pytest.raises(Unauthorized):
        registry.authenticate(old)
    assert registry.authenticate(new).host == "hv1"
    assert oct((work / "tokens.toml").stat().st_mode & 0o777) == "0o600"
    # Revoking a name that is not there says so and changes nothing.
    again = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", BLOCKS["token-revoke"]], cwd=work, env=scratch,
        capture_output=True, text=True, timeout=GUARD, check=False,
    )  # fmt: skip
    assert again.returncode != 0 and "no token named 'agent-hv1'" in again.stderr
    assert len(load_tokens(work / "tokens.toml")) == len(registry)


async def test_sqlite_backup_and_restore(
    broker: Broker, env: dict[str, str], tmp_path: Path
) -> None:
    mid = await migration(broker, result=None)
    run("sqlite-backup", env, tmp_path)
    # A second broker restored from the backup has the migration.
    fresh = tmp_path / "restored"
    restored_env = env | {"STATE": str(fresh / "state"), "TOKENS": str(fresh / "tokens.toml")}
    (fresh / "state").mkdir(parents=True)
    run("sqlite-restore", restored_env, tmp_path)
    other = start_broker(fresh)  # adds its own tokens to the restored file
    try:
        done = vifbroker("migrations", "show", mid, "-o", "json", env={
            "VIFBROKER_BROKER": other.url,
            "VIFBROKER_TOKEN_FILE": str(other.controller_token_file),
        })  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["migration"]["state"] == "uploaded"
    finally:
        other.stop()
