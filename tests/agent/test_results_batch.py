"""Results posted together share one request; each post still gets its own outcome."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from agent_harness import BrokerProcess, requests_by_route
from aiohttp import web
from aiohttp.test_utils import TestServer

from testkit import mac
from vifbroker.agent.resultsbatch import ResultsBatcher
from vifbroker.client import BrokerClient, Conflict, NotFound, RetryPolicy
from vifbroker.model import Interface, Migration, MigrationState, ResultIn, VirtualPort

FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, timeout=5)


def _applied(n: int) -> list[ResultIn]:
    return [ResultIn(mac=mac(n), generation=1, status="skipped")]


async def _results_requests(url: str) -> dict[str, int]:
    """Results requests the broker answered, by route."""
    counts = await requests_by_route(url)
    return {
        "host": counts.get("POST /v1/hosts/{host}/results", 0),
        "migration": counts.get("POST /v1/migrations/{id}/results", 0),
    }


async def test_posts_made_together_are_one_request(broker_proc: BrokerProcess) -> None:
    ctl = BrokerClient(broker_proc.url, broker_proc.token("controller"), retry=FAST)
    dst = BrokerClient(broker_proc.url, broker_proc.token("agent", "host-b"), retry=FAST)
    try:
        ids = []
        for n in range(3):
            dom = str(uuid.uuid4())
            ids.append((await ctl.create_migration(dom, "host-a", "host-b")).id)
            vp = VirtualPort(type="openvswitch", portdata=f"pd {n}")
            await ctl.upload(dom, [Interface(mac=mac(n), virtualport=vp)])
        await ctl.cancel(ids[2])
        before = await _results_requests(broker_proc.url)
        batcher = ResultsBatcher(dst, "host-b")
        outcomes = await asyncio.gather(
            *(batcher.post(mid, _applied(n)) for n, mid in enumerate(ids)),
            batcher.post("no-such-migration", _applied(0)),
            return_exceptions=True,
        )
        assert outcomes[:2] == [None, None]
        assert isinstance(outcomes[2], Conflict) and isinstance(outcomes[3], NotFound)
        for mid in ids[:2]:
            assert (await ctl.get_migration(mid)).state == MigrationState.APPLIED
        after = await _results_requests(broker_proc.url)
        assert after["host"] - before["host"] == 1
        assert after["migration"] == before["migration"]
    finally:
        await ctl.close()
        await dst.close()


@pytest.fixture
async def old_broker() -> AsyncIterator[tuple[TestServer, list[str]]]:
    """A broker without the host results route: it takes one migration's post at a time."""
    posted: list[str] = []

    async def one(request: web.Request) -> web.Response:
        mid = request.match_info["id"]
        posted.append(mid)
        if mid == "gone":
            return web.json_response({}, status=404)
        now = datetime.now(UTC)
        migration = Migration(
            id=mid, domain_uuid=str(uuid.uuid4()), source_host="host-a",
            destination_host="host-b", state=MigrationState.APPLIED,
            on_backend_mismatch="skip", created_at=now, updated_at=now, expires_at=now,
            revision=1,
        )  # fmt: skip
        return web.json_response(migration.model_dump(mode="json"))

    app = web.Application()
    app.router.add_post("/v1/migrations/{id}/results", one)
    server = TestServer(app)
    await server.start_server()
    try:
        yield server, posted
    finally:
        await server.close()


async def test_a_broker_without_the_route_gets_one_post_per_migration(
    old_broker: tuple[TestServer, list[str]],
) -> None:
    server, posted = old_broker
    async with BrokerClient(str(server.make_url("")), "t", retry=FAST) as client:
        batcher = ResultsBatcher(client, "host-b")
        outcomes = await asyncio.gather(
            batcher.post("m1", _applied(1)),
            batcher.post("gone", _applied(2)),
            return_exceptions=True,
        )
    assert outcomes[0] is None and isinstance(outcomes[1], NotFound)
    assert sorted(posted) == ["gone", "m1"] and not batcher.bulk
