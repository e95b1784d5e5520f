"""Issue 8, finding 3, from the command line: ``vifbroker push --to`` with an
agent token creates the migration only where the broker runs with
``--agent-migrations`` and the agent's own host reports the domain running."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
from served import Served, served_broker


async def _push(b: Served, tmp_path: Path, dom: str) -> subprocess.CompletedProcess[str]:
    token = tmp_path / "src.token"
    token.write_text(b.tokens["src"])
    xml = (f"<domain><uuid>{dom}</uuid><devices><interface type='bridge'>"
           "<mac address='52:54:00:00:00:01'/></interface></devices></domain>")
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vifbroker.cli", "push", "--broker", b.url, "--token-file",
         str(token), "--domain-xml", "-", "--to", "dst", "--from", "src"],
        input=xml, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def _report_running(b: Served, dom: str) -> None:
    async with aiohttp.ClientSession() as s, s.put(
        b.url + "/v1/hosts/src", json={"running_domains": [dom]}, headers=b.auth("src")
    ) as r:
        assert r.status == 200


@pytest.mark.parametrize("switch", [False, True], ids=["without", "with-agent-migrations"])
async def test_push_to_with_an_agent_token(tmp_path: Path, switch: bool) -> None:
    args = ("--agent-migrations",) if switch else ()
    async with served_broker(tmp_path, args=args) as b:
        dom = str(uuid.uuid4())
        await _report_running(b, dom)
        done = await _push(b, tmp_path, dom)
        if not switch:
            assert done.returncode == 1 and "403" in done.stderr, done.stderr
            return
        assert done.returncode == 0, done.stderr
        # Another domain, which host src never reported: refused even with the switch.
        done = await _push(b, tmp_path, str(uuid.uuid4()))
        assert done.returncode == 1 and "403" in done.stderr, done.stderr
