"""The ``serve`` and ``token`` subcommands, run as real processes where it matters."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_helpers import PORTDATA_HOSTILE, iface, mac

from testkit import free_port
from vifbroker.server.auth import Role, load_tokens
from vifbroker.server.config import load_settings

GUARD = 30


def vifbroker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vifbroker.cli", *args],
        capture_output=True, text=True, timeout=GUARD, env={**os.environ, **(env or {})},
    )


def test_token_add_prints_only_the_token_and_stores_its_hash(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens.toml"
    first = vifbroker("token", "add", "--tokens", str(path), "--role", "controller")
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert first.stdout == token + "\n" and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = vifbroker(
        "token", "add", "--tokens", str(path), "--role", "agent", "--host", "hv1", "--name", "a1"
    )
    assert second.returncode == 0, second.stderr
    agent = second.stdout.strip()
    text = path.read_text()
    assert token not in text and agent not in text
    doc = tomllib.loads(text)
    assert [(t["role"], t.get("host"), t["name"]) for t in doc["tokens"]] == [
        ("controller", None, "controller"), ("agent", "hv1", "a1"),
    ]
    registry = load_tokens(path)
    assert registry.authenticate(token).role is Role.CONTROLLER
    assert registry.authenticate(agent).host == "hv1"


def test_token_add_refuses_an_agent_without_host(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    done = vifbroker("token", "add", "--tokens", str(path), "--role", "agent")
    assert done.returncode == 2
    assert done.stdout == ""
    assert not path.exists()


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "broker.toml"
    config.write_text('listen = "0.0.0.0:9000"\nlog_format = "text"\nmax_body_bytes = 4096\n')
    monkeypatch.setenv("VIFBROKER_LOG_FORMAT", "json")
    monkeypatch.setenv("VIFBROKER_STATE_DIR", str(tmp_path / "st"))
    settings = load_settings(config, listen="127.0.0.1:9001")
    assert settings.listen == "127.0.0.1:9001"  # flag beats file
    assert settings.log_format == "json"  # environment beats file
    assert settings.max_body_bytes == 4096  # file beats default
    assert settings.tokens_path == tmp_path / "st" / "tokens.toml"
    assert settings.db_url == f"sqlite://{(tmp_path / 'st' / 'vifbroker.db').resolve()}"
    monkeypatch.setenv("VIFBROKER_CONFIG", str(config))
    assert load_settings().max_body_bytes == 4096
    config.write_text("no_such_setting = 1\n")
    with pytest.raises(ValueError):
        load_settings(config)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")


@contextmanager
def serve(state: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vifbroker.cli", "serve", "--state-dir", str(state),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "VIFBROKER_LOG_LEVEL": "INFO", "VIFBROKER_LOG_FORMAT": "json"},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=GUARD)


@asynccontextmanager
async def client(port: int, proc: subprocess.Popen[str]) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GUARD
        while True:  # until the process answers (condition polling)
            assert proc.poll() is None, "broker exited"
            try:
                async with session.get("/healthz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            assert loop.time() < deadline, "broker never became healthy"
            await asyncio.sleep(0.05)
        yield session


async def test_restarted_broker_keeps_everything_it_acknowledged(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    domain = str(uuid.uuid4())
    with serve(state, port) as proc:
        async with client(port, proc) as http:
            token_file = state / "controller.token"
            assert stat.S_IMODE(state.stat().st_mode) == 0o700  # made here: the owner's only
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
            assert stat.S_IMODE((state / "tokens.toml").stat().st_mode) == 0o600
            token = token_file.read_text().strip()
            auth = {"Authorization": f"Bearer {token}"}
            async with http.post("/v1/migrations", headers=auth, json={
                "domain_uuid": domain, "source_host": "src", "destination_host": "dst",
            }) as resp:
                assert resp.status == 201
                migration = await resp.json()
            acked: list[dict[str, Any]] = []
            for i in range(20):
                async with http.put(
                    f"/v1/domains/{domain}/interfaces/{mac(i)}", headers=auth,
                    json=iface(mac(i), portdata=f"{i}:{PORTDATA_HOSTILE}"),
                ) as resp:
                    assert resp.status == 200
                    acked.append(await resp.json())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=GUARD)
        _, stderr = proc.communicate(timeout=GUARD)
    # The token is never logged; the path where it lies is.
    assert token not in stderr
    assert "controller.token" in stderr
    assert all(json.loads(line) for line in stderr.splitlines() if line.strip())

    with serve(state, port) as proc:
        async with client(port, proc) as http:
            async with http.get(f"/v1/migrations/{migration['id']}", headers=auth) as resp:
                assert resp.status == 200
                again = await resp.json()
            assert again["state"] == "uploaded"
            assert [v["mac"] for v in again["interfaces"]] == [mac(i) for i in range(20)]
            async with http.get(
                f"/v1/domains/{domain}/interfaces",
                headers={**auth, "Accept": "application/json"},
            ) as resp:
                records = (await resp.json())["interfaces"]
            assert [(r["mac"], r["generation"]) for r in records] == [
                (a["mac"], a["generation"]) for a in acked
            ]
            for i, r in enumerate(records):
                assert r["interface"]["virtualport"]["portdata"] == f"{i}:{PORTDATA_HOSTILE}"
            # Revisions go on from where they were.
            async with http.put(f"/v1/domains/{domain}/interfaces/{mac(0)}", headers=auth,
                                json=iface(mac(0))) as resp:
                assert (await resp.json())["generation"] == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=GUARD) == 0


async def test_sigterm_answers_parked_long_polls_then_exits(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    with serve(state, port) as proc:
        async with client(port, proc) as http:
            auth = {"Authorization": f"Bearer {(state / 'controller.token').read_text().strip()}"}
            parked = asyncio.create_task(
                http.get("/v1/hosts/dst/inbox", params={"wait": "60"}, headers=auth)
            )
            while True:  # until the broker reports the parked request
                async with http.get("/metrics") as resp:
                    if "vifbroker_open_longpolls 1.0" in await resp.text():
                        break
                await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            resp = await asyncio.wait_for(parked, GUARD)
            assert resp.status == 200
            assert (await resp.json())["items"] == []
        assert await asyncio.to_thread(proc.wait, GUARD) == 0
