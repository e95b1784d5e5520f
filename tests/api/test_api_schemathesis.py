"""Issue 8: schemathesis over every operation of openapi.yaml, with a valid token
of each role (controller, source agent, destination agent, unrelated agent).

The broker is a real ``vifbroker serve`` process (``--agent-migrations``, long
polls capped at 0.2 s so that a generated ``wait=60`` costs nothing). Every
answer must be no 5xx and must conform to the contract: documented status,
content type, headers and body schema. ``GET /v1/events`` is left out: it is
an endless stream that schemathesis would read for ever (the authorization
matrix and the attack corpus cover it). The number of generated cases is
printed (``SCHEMATHESIS_CASES``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from openapi_check import SPEC_PATH
from vifbroker.server.auth import Role, add_token

SCHEMA = schemathesis.openapi.from_path(SPEC_PATH).exclude(path="/v1/events")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
ROLES = ("controller", "src", "dst", "other")
#: Examples per operation (each sent once per role): a bounded run time.
MAX_EXAMPLES = 20
CASES: list[str] = []


class Live:
    def __init__(self, directory: Path) -> None:
        token_file = directory / "tokens.toml"
        self.tokens = {"controller": add_token(token_file, Role.CONTROLLER)}
        for host in ROLES[1:]:
            self.tokens[host] = add_token(token_file, Role.AGENT, host=host)
        with socket_port() as port:
            self.url = f"http://127.0.0.1:{port}"
        self.log = directory / "broker.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vifbroker.cli", "serve", "--agent-migrations",
                 "--listen", self.url.removeprefix("http://"), "--tokens", str(token_file),
                 "--state-dir", str(directory / "state")],
                stdout=out, stderr=out,
                env={**os.environ, "VIFBROKER_LONGPOLL_MAX_SECONDS": "0.2",
                     "VIFBROKER_LOG_LEVEL": "WARNING"},
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "broker did not come up"
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class socket_port:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    broker = Live(tmp_path_factory.mktemp("schemathesis"))
    yield broker
    broker.stop()
    print(f"\nSCHEMATHESIS_CASES {len(CASES)} (requests: {len(CASES) * len(ROLES)})")
    errors = [line for line in broker.log.read_text().splitlines() if "Traceback" in line]
    assert not errors, broker.log.read_text()


@SCHEMA.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_for_every_role(case: schemathesis.Case, live: Live) -> None:
    CASES.append(case.operation.label)
    for role in ROLES:
        headers = {"Authorization": f"Bearer {live.tokens[role]}"}
        case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS, timeout=30)
