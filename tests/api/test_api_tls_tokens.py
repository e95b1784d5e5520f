"""Issue 8, finding 8: HTTPS and mutual TLS; tokens picked up while the broker runs.

Certificates come from trustme (a throwaway CA made by the test). Token file
changes are waited for on a condition with a 2 s deadline: the bound the
issue sets for a token added or revoked to take effect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
import trustme
from api_helpers import Broker
from served import served_broker

from testkit import wait_until
from vifbroker.client import BrokerClient, tls_context
from vifbroker.server.auth import Role, add_token

EFFECTIVE_WITHIN = 2.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("controller@vifbroker")
    stranger = trustme.CA().issue_cert("mallory")
    d = tmp_path_factory.mktemp("pki")
    files = {
        "ca": d / "ca.pem", "server_cert": d / "server.pem", "server_key": d / "server.key",
        "client_cert": d / "client.pem", "client_key": d / "client.key",
        "stranger_cert": d / "stranger.pem", "stranger_key": d / "stranger.key",
    }  # fmt: skip
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    stranger.cert_chain_pems[0].write_to_path(str(files["stranger_cert"]))
    stranger.private_key_pem.write_to_path(str(files["stranger_key"]))
    return files


def _tls_args(pki: dict[str, Path], mutual: bool) -> tuple[str, ...]:
    args = ("--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"]))
    return (*args, "--tls-client-ca", str(pki["ca"])) if mutual else args


async def _status(url: str, headers: dict[str, str], tls: ssl.SSLContext | bool) -> int:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers, ssl=tls) as r:
        return r.status


async def test_https(tmp_path: Path, pki: dict[str, Path]) -> None:
    trusted = tls_context(pki["ca"])
    assert trusted is not None
    async with served_broker(tmp_path, args=_tls_args(pki, mutual=False), tls=trusted) as b:
        url = b.url
        assert url.startswith("https://")
        assert await _status(url + "/healthz", {}, trusted) == 200
        assert await _status(url + "/v1/migrations", b.auth(), trusted) == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await _status(url + "/healthz", {}, ssl.create_default_context())  # not our CA
        with pytest.raises(aiohttp.ClientError):
            await _status(url.replace("https:", "http:") + "/healthz", {}, False)  # plain HTTP
        # The Python client, with --ca-file's context.
        async with BrokerClient(url, b.tokens["controller"], tls=trusted) as client:
            page = await client.list_migrations()
            assert page.migrations == []


async def test_mutual_tls(tmp_path: Path, pki: dict[str, Path]) -> None:
    with_cert = tls_context(pki["ca"], pki["client_cert"], pki["client_key"])
    without = tls_context(pki["ca"])
    foreign = tls_context(pki["ca"], pki["stranger_cert"], pki["stranger_key"])
    assert with_cert and without and foreign
    async with served_broker(tmp_path, args=_tls_args(pki, mutual=True), tls=with_cert) as b:
        url = b.url + "/v1/migrations"
        assert await _status(url, b.auth(), with_cert) == 200
        for refused in (without, foreign):
            with pytest.raises(aiohttp.ClientError):
                await _status(url, b.auth(), refused)
        # vifbroker push with --ca-file --cert --key (and a controller token).
        token = tmp_path / "controller.token"
        token.write_text(b.tokens["controller"])
        dom = str(uuid.uuid4())
        xml = (f"<domain><uuid>{dom}</uuid><devices><interface type='bridge'>"
               "<mac address='52:54:00:00:00:01'/></interface></devices></domain>")
        done = subprocess.run(
            [sys.executable, "-m", "vifbroker.cli", "push", "--broker", b.url,
             "--token-file", str(token), "--domain-xml", "-", "--to", "dst", "--from", "src",
             "--ca-file", str(pki["ca"]), "--cert", str(pki["client_cert"]),
             "--key", str(pki["client_key"])],
            input=xml, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["interfaces"][0]["generation"] == 1


# ------------------------------------------------------------ the token file


async def _authenticates(broker: Broker, token: str) -> bool:
    resp = await broker.client.get("/v1/hosts", headers={"Authorization": f"Bearer {token}"})
    return resp.status == 200


async def test_a_token_added_and_revoked_while_running(broker: Broker, tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    added = add_token(path, Role.CONTROLLER, name="ops-new")
    await wait_until(lambda: _authenticates(broker, added), timeout=EFFECTIVE_WITHIN)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vifbroker.cli", "token", "revoke", "--tokens", str(path),
         "ops-new"], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    async def revoked() -> bool:
        return not await _authenticates(broker, added)

    await wait_until(revoked, timeout=EFFECTIVE_WITHIN)
    assert await _authenticates(broker, broker.tokens["controller"])  # the others stay


async def test_a_file_that_does_not_parse_keeps_the_tokens(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="vifbroker.server.tokenfile")
    path = tmp_path / "tokens.toml"
    good = path.read_text()
    path.write_text(good + "\n[[tokens]]\nname = 'broken'\nsha256 = 'xyz'\n")
    await wait_until(lambda: "not reloaded" in caplog.text, timeout=EFFECTIVE_WITHIN)
    assert "sha256 must be 64 hex digits" in caplog.text
    assert await _authenticates(broker, broker.tokens["controller"])


async def test_sighup_rereads_the_file(tmp_path: Path) -> None:
    async with served_broker(tmp_path) as b:
        path = b.token_file
        before = path.stat()
        text = path.read_text()
        # Revoke "other" in place, keeping size and mtime: only SIGHUP can tell.
        start = text.index('name = "other"')
        block_start = text.rindex("[[tokens]]", 0, start)
        block_end = text.find("[[tokens]]", start)
        block = text[block_start:block_end if block_end != -1 else len(text)]
        padded = text.replace(block, "#" * (len(block) - 1) + "\n")
        assert len(padded) == len(text)
        with path.open("r+") as f:
            f.write(padded)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        url = b.url + "/v1/hosts/other/inbox"
        assert await _status(url, b.auth("other"), False) == 200
        os.kill(b.proc.pid, signal.SIGHUP)

        async def revoked() -> bool:
            return await _status(url, b.auth("other"), False) == 401

        await wait_until(revoked, timeout=EFFECTIVE_WITHIN)


def test_token_list_shows_no_hashes_and_revoke_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    add_token(path, Role.CONTROLLER, name="ctl")
    add_token(path, Role.AGENT, host="hv1")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vifbroker.cli", "token", *args,
                               "--tokens", str(path)], capture_output=True, text=True,
                              timeout=60, check=False)

    listed = cli("list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {"name": "ctl", "role": "controller"}, {"name": "hv1", "role": "agent", "host": "hv1"}]
    table = cli("list").stdout
    assert "hv1" in table and "sha256" not in table
    hashes = [line.split('"')[1] for line in path.read_text().splitlines()
              if line.startswith("sha256")]
    assert hashes and not any(h in listed.stdout + table for h in hashes)
    missing = cli("revoke", "nobody")
    assert missing.returncode == 1 and "no token named 'nobody'" in missing.stderr
    assert cli("revoke", "hv1").returncode == 0
    assert [t["name"] for t in json.loads(cli("list", "-o", "json").stdout)] == ["ctl"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
