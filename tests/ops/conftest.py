"""One real broker process per test module (the CLI tests only read and end migrations)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ops_harness import Broker, start_broker

from vifbroker.client import BrokerClient, RetryPolicy


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    proc = start_broker(Path(tmp_path_factory.mktemp("broker")))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def controller(broker: Broker) -> AsyncIterator[BrokerClient]:
    token = broker.controller_token_file.read_text().strip()
    async with BrokerClient(broker.url, token, retry=RetryPolicy(attempts=3)) as client:
        yield client
