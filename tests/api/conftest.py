"""The real broker app on a real SQLite store in tmp_path, served on loopback.

Every response goes through the openapi.yaml conformance checker; a test that
got any answer the contract does not allow fails at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner
from api_helpers import Broker, Clock

from openapi_check import SpecChecker, conformance_middleware
from testkit import no_loop_blocking
from vifbroker.server import Settings, create_app
from vifbroker.server.auth import Role, add_token, load_tokens
from vifbroker.server.cli import connection_limits
from vifbroker.server.connections import BrokerRunner
from vifbroker.store.sqlite import SQLiteStore

AGENTS = ("src", "dst", "other", "runner")


class BrokerTestServer(TestServer):
    """aiohttp's test server, serving through the broker's own connection layer."""

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.settings = settings

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        # aiohttp's TestServer asks for handler_cancellation=True; the broker
        # serves without it (a client hanging up must not cut a store write
        # short), and tests must see what production does.
        kwargs["handler_cancellation"] = False
        return BrokerRunner(self.app, connection_limits(self.settings), **kwargs)


@pytest.fixture(scope="session")
def spec_checker() -> SpecChecker:
    return SpecChecker.load()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def broker(
    tmp_path: Path,
    aiohttp_client: Callable[..., Any],
    spec_checker: SpecChecker,
    settings_overrides: dict[str, Any],
) -> AsyncIterator[Broker]:
    token_file = tmp_path / "tokens.toml"
    tokens = {"controller": add_token(token_file, Role.CONTROLLER)}
    for host in AGENTS:
        tokens[host] = add_token(token_file, Role.AGENT, host=host)
    settings = Settings(
        state_dir=tmp_path,
        tokens=token_file,
        expiry_interval_seconds=0.05,
        **settings_overrides,
    )
    store = SQLiteStore(tmp_path / "vifbroker.db")
    clock = Clock()
    app = create_app(settings, store, load_tokens(token_file), clock=clock)
    violations: list[str] = []
    app.middlewares.insert(0, conformance_middleware(spec_checker, violations))
    async with no_loop_blocking():
        client: TestClient[web.Request, web.Application] = await aiohttp_client(
            BrokerTestServer(app, settings)
        )
        yield Broker(client, store, clock, tokens, violations)
    assert not violations, "\n".join(violations)
