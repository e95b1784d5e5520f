"""Uploads made together share one request; each upload still gets its own outcome."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from agent_harness import BrokerProcess, requests_by_route
from aiohttp import web
from aiohttp.test_utils import TestServer

from testkit import mac
from vifbroker.agent.turnbatch import BODY_BUDGET
from vifbroker.agent.uploadbatch import UploadBatcher
from vifbroker.client import (
    BrokerClient,
    Forbidden,
    InvalidRequest,
    NotFound,
    RetryPolicy,
    UploadResult,
)
from vifbroker.model import Interface, VirtualPort

FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02, timeout=5)

HOST_ROUTE = "POST /v1/hosts/{host}/uploads"
DOMAIN_ROUTE = "PUT /v1/domains/{uuid}/interfaces"


def _vifs(n: int, portdata: str) -> list[Interface]:
    vp = VirtualPort(type="openvswitch", portdata=portdata)
    return [Interface(mac=mac(n), virtualport=vp), Interface(mac=mac(n + 100), virtualport=vp)]


async def test_uploads_made_together_are_one_request(broker_proc: BrokerProcess) -> None:
    ctl = BrokerClient(broker_proc.url, broker_proc.token("controller"), retry=FAST)
    src = BrokerClient(broker_proc.url, broker_proc.token("agent", "host-a"), retry=FAST)
    try:
        doms = [str(uuid.uuid4()) for _ in range(4)]
        for dom in doms[:3]:
            await ctl.create_migration(dom, "host-a", "host-b")
        await ctl.create_migration(doms[3], "host-b", "host-a")  # arriving on host-a
        before = await requests_by_route(broker_proc.url)
        batcher = UploadBatcher(src, "host-a")
        outcomes = await asyncio.gather(
            *(batcher.upload(dom, _vifs(n, f"pd {n}")) for n, dom in enumerate(doms)),
            batcher.upload(str(uuid.uuid4()), _vifs(9, "nobody")),
            return_exceptions=True,
        )
        for n, (dom, got) in enumerate(zip(doms[:3], outcomes, strict=False)):
            assert isinstance(got, UploadResult), got
            assert got.domain_uuid == dom
            assert got.generations == {mac(n): 1, mac(n + 100): 1}
            records = await ctl.get_interfaces(dom)
            assert {(r.mac, r.interface.portdata if r.interface else None) for r in records} == {
                (mac(n), f"pd {n}"),
                (mac(n + 100), f"pd {n}"),
            }
        assert isinstance(outcomes[3], Forbidden)
        assert isinstance(outcomes[4], NotFound)
        after = await requests_by_route(broker_proc.url)
        assert after.get(HOST_ROUTE, 0) - before.get(HOST_ROUTE, 0) == 1
        assert after.get(DOMAIN_ROUTE, 0) == before.get(DOMAIN_ROUTE, 0)
        # a second upload of the same domain in one turn goes in a request of its own
        twice = await asyncio.gather(
            batcher.upload(doms[0], _vifs(0, "again 1")),
            batcher.upload(doms[0], _vifs(0, "again 2")),
        )
        assert sorted(r.generations[mac(0)] for r in twice) == [2, 3]
    finally:
        await ctl.close()
        await src.close()


async def test_a_large_group_is_split_under_the_body_budget(broker_proc: BrokerProcess) -> None:
    """The broker reads small bodies on its loop: a group past BODY_BUDGET goes as
    several requests (at once), every upload still landing."""
    ctl = BrokerClient(broker_proc.url, broker_proc.token("controller"), retry=FAST)
    src = BrokerClient(broker_proc.url, broker_proc.token("agent", "host-a"), retry=FAST)
    try:
        doms = [str(uuid.uuid4()) for _ in range(12)]
        for dom in doms:
            await ctl.create_migration(dom, "host-a", "host-b")
        before = await requests_by_route(broker_proc.url)
        batcher = UploadBatcher(src, "host-a")
        pad = "p" * (BODY_BUDGET // 10)  # two vifs each: ~5 domains a request
        outcomes = await asyncio.gather(
            *(batcher.upload(dom, _vifs(n, f"{n} {pad}")) for n, dom in enumerate(doms))
        )
        assert [o.domain_uuid for o in outcomes] == doms
        after = await requests_by_route(broker_proc.url)
        assert 3 <= after.get(HOST_ROUTE, 0) - before.get(HOST_ROUTE, 0) <= 4
        for n, dom in enumerate(doms):
            (record, _) = await ctl.get_interfaces(dom)
            assert record.interface is not None and record.interface.portdata == f"{n} {pad}"
    finally:
        await ctl.close()
        await src.close()


async def test_one_unreadable_upload_does_not_hold_up_the_others(
    broker_proc: BrokerProcess,
) -> None:
    """A group the broker refuses whole (one entry it cannot read: here an MTU below
    the model's bound, as a newer agent's model might send) is sent again domain by
    domain: the others land, the bad one gets its own refusal."""
    ctl = BrokerClient(broker_proc.url, broker_proc.token("controller"), retry=FAST)
    src = BrokerClient(broker_proc.url, broker_proc.token("agent", "host-a"), retry=FAST)
    try:
        doms = [str(uuid.uuid4()) for _ in range(3)]
        for dom in doms:
            await ctl.create_migration(dom, "host-a", "host-b")
        bad = Interface.model_construct(**{**_vifs(9, "bad")[0].__dict__, "mtu": 1})
        batcher = UploadBatcher(src, "host-a")
        outcomes = await asyncio.gather(
            batcher.upload(doms[0], _vifs(0, "good 0")),
            batcher.upload(doms[1], [bad]),
            batcher.upload(doms[2], _vifs(2, "good 2")),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], UploadResult) and isinstance(outcomes[2], UploadResult)
        assert isinstance(outcomes[1], InvalidRequest)
        assert batcher.bulk  # the route exists: later groups still use it
        assert len(await ctl.get_interfaces(doms[0])) == 2
        assert len(await ctl.get_interfaces(doms[2])) == 2
    finally:
        await ctl.close()
        await src.close()


@pytest.fixture
async def old_broker() -> AsyncIterator[tuple[TestServer, list[str]]]:
    """A broker without the host uploads route: it takes one domain's upload at a time."""
    uploaded: list[str] = []

    async def one(request: web.Request) -> web.Response:
        dom = request.match_info["uuid"]
        uploaded.append(dom)
        if dom == "00000000-0000-0000-0000-000000000000":
            return web.json_response({}, status=404)
        macs = [i["mac"] for i in (await request.json())["interfaces"]]
        return web.json_response(
            {
                "domain_uuid": dom,
                "revision": 7,
                "interfaces": [{"mac": m, "generation": 1} for m in macs],
            }
        )

    app = web.Application()
    app.router.add_put("/v1/domains/{uuid}/interfaces", one)
    server = TestServer(app)
    await server.start_server()
    try:
        yield server, uploaded
    finally:
        await server.close()


async def test_a_broker_without_the_route_gets_one_upload_per_domain(
    old_broker: tuple[TestServer, list[str]],
) -> None:
    server, uploaded = old_broker
    dom, gone = str(uuid.uuid4()), "00000000-0000-0000-0000-000000000000"
    async with BrokerClient(str(server.make_url("")), "t", retry=FAST) as client:
        batcher = UploadBatcher(client, "host-a")
        outcomes = await asyncio.gather(
            batcher.upload(dom, _vifs(1, "a")),
            batcher.upload(gone, _vifs(2, "b")),
            return_exceptions=True,
        )
    assert isinstance(outcomes[0], UploadResult) and outcomes[0].revision == 7
    assert isinstance(outcomes[1], NotFound)
    assert sorted(uploaded) == sorted([dom, gone]) and not batcher.bulk
