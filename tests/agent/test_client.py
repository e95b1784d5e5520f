"""The broker client against the real broker: failover, retries, typed errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from agent_harness import BrokerProcess, free_port
from aiohttp import web
from aiohttp.test_utils import TestServer

from vifbroker.client import (
    BadResponse,
    BrokerClient,
    Conflict,
    Forbidden,
    InvalidRequest,
    NoActiveMigration,
    NotFound,
    PreconditionFailed,
    ProblemError,
    RetryPolicy,
    TransportError,
    Unauthorized,
    Unavailable,
)
from vifbroker.model import Interface, MigrationState, ResultIn, VirtualPort, portdata_digest

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, timeout=5)


def iface(mac: str, portdata: str) -> Interface:
    return Interface(mac=mac, virtualport=VirtualPort(type="openvswitch", portdata=portdata))


async def test_first_broker_url_down_fails_over_to_the_next(
    broker_proc: BrokerProcess,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with BrokerClient(
        f"{dead},{broker_proc.url}", broker_proc.token("controller"), retry=FAST
    ) as client:
        dom = str(uuid.uuid4())
        m = await client.create_migration(dom, "host-a", "host-b", domain_name="web-1")
        again = await client.get_migration(m.id)

    assert client.urls == [dead, broker_proc.url]
    assert m.state == MigrationState.PENDING and m.domain_name == "web-1"
    assert again.id == m.id


async def test_every_broker_down_is_a_transport_error() -> None:
    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    async with BrokerClient(urls, "token", retry=FAST) as client:
        with pytest.raises(TransportError):
            await client.list_hosts()


async def test_problems_arrive_as_typed_errors(broker_proc: BrokerProcess) -> None:
    ctl = BrokerClient(broker_proc.url, broker_proc.token("controller"), retry=FAST)
    agent_a = BrokerClient(broker_proc.url, broker_proc.token("agent", "host-a"), retry=FAST)
    stranger = BrokerClient(broker_proc.url, "not-a-token", retry=FAST)
    dom = str(uuid.uuid4())
    try:
        with pytest.raises(NotFound) as nf:
            await ctl.get_migration("no-such-migration")
        assert nf.value.status == 404
        assert nf.value.type == "urn:vifbroker:problem:not-found"
        assert nf.value.slug == "not-found"

        with pytest.raises(Unauthorized) as ua:
            await stranger.list_hosts()
        assert ua.value.status == 401

        with pytest.raises(Forbidden) as fb:
            await agent_a.inbox("host-b", 0)
        assert fb.value.status == 403

        with pytest.raises(NoActiveMigration) as nam:
            await ctl.upload(dom, [iface("52:54:00:00:00:01", "x")])
        assert nam.value.status == 409 and isinstance(nam.value, Conflict)

        with pytest.raises(InvalidRequest) as inv:
            await ctl.create_migration(dom, "not a host!", "host-b")
        assert inv.value.status in (400, 422)

        await ctl.create_migration(dom, "host-a", "host-b")
        with pytest.raises(Conflict) as cf:
            await ctl.create_migration(dom, "host-a", "host-c")
        assert cf.value.status == 409 and not isinstance(cf.value, NoActiveMigration)

        first = await ctl.upload_one(dom, iface("52:54:00:00:00:01", "one"), if_match=0)
        assert first == 1
        second = await ctl.upload_one(dom, iface("52:54:00:00:00:01", "two"), if_match=1)
        assert second == 2
        with pytest.raises(PreconditionFailed) as pf:
            await ctl.upload_one(dom, iface("52:54:00:00:00:01", "stale"), if_match=1)
        assert pf.value.status == 412
        assert pf.value.current_generation == 2
    finally:
        for c in (ctl, agent_a, stranger):
            await c.close()


async def test_upload_inbox_results_and_barrier_round_trip(broker_proc: BrokerProcess) -> None:
    ctl = BrokerClient(broker_proc.url, broker_proc.token("controller"), retry=FAST)
    dst = BrokerClient(broker_proc.url, broker_proc.token("agent", "host-b"), retry=FAST)
    dom = str(uuid.uuid4())
    try:
        m = await ctl.create_migration(dom, "host-a", "host-b", on_backend_mismatch="fail")
        up = await ctl.upload(
            dom, [iface("52:54:00:00:00:01", "a"), iface("52:54:00:00:00:02", "b")]
        )
        assert up.generations == {"52:54:00:00:00:01": 1, "52:54:00:00:00:02": 1}

        inbox = await dst.inbox("host-b", 0, wait=5)
        (item,) = [i for i in inbox.items if i.migration.id == m.id]
        assert item.direction == "incoming"
        assert {r.interface.portdata for r in item.interfaces if r.interface} == {"a", "b"}

        await dst.post_results(m.id, [
            ResultIn(mac=r.mac, generation=r.generation, status="applied",
                     digest=portdata_digest(r.interface.portdata if r.interface else None))
            for r in item.interfaces
        ])  # fmt: skip
        done = await ctl.wait_applied(m.id, 10)
        assert done.state == MigrationState.APPLIED

        later = await dst.inbox("host-b", inbox.revision, wait=0)
        assert [i.migration.state for i in later.items] == [MigrationState.APPLIED]

        page = await ctl.list_migrations(domain_uuid=dom)
        assert [x.id for x in page.migrations] == [m.id]
        assert (await ctl.complete(m.id)).state == MigrationState.COMPLETED
        assert [x.id async for x in ctl.iter_migrations(state="completed", page_size=1)
                if x.domain_uuid == dom] == [m.id]  # fmt: skip
    finally:
        await ctl.close()
        await dst.close()


@pytest.fixture
async def flaky_server() -> AsyncIterator[tuple[TestServer, list[int]]]:
    """A stand-in broker (the client is under test here): 503 twice, then an answer."""
    seen: list[int] = []

    async def hosts(request: web.Request) -> web.Response:
        seen.append(1)
        if len(seen) <= 2:
            return web.json_response(
                {"type": "urn:vifbroker:problem:unavailable", "title": "Unavailable",
                 "status": 503, "detail": "store down"},
                status=503, content_type="application/problem+json",
            )  # fmt: skip
        return web.json_response({"hosts": []})

    app = web.Application()
    app.router.add_get("/v1/hosts", hosts)
    server = TestServer(app)
    await server.start_server()
    try:
        yield server, seen
    finally:
        await server.close()


async def test_503_is_retried_with_backoff_then_succeeds(
    flaky_server: tuple[TestServer, list[int]],
) -> None:
    server, seen = flaky_server
    async with BrokerClient(str(server.make_url("")), "t", retry=FAST) as client:
        assert await client.list_hosts() == []
    assert len(seen) == 3


async def test_503_after_the_last_attempt_is_unavailable(
    flaky_server: tuple[TestServer, list[int]],
) -> None:
    server, seen = flaky_server
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)
    async with BrokerClient(str(server.make_url("")), "t", retry=policy) as client:
        with pytest.raises(Unavailable) as exc:
            await client.list_hosts()
    assert exc.value.status == 503 and exc.value.detail == "store down"
    assert isinstance(exc.value, ProblemError)
    assert len(seen) == 2


async def test_upload_of_libvirt_xml_text(broker_proc: BrokerProcess) -> None:
    dom = str(uuid.uuid4())
    xml = (
        f"<domain><name>x</name><uuid>{dom}</uuid><devices>"
        "<interface type='bridge'><mac address='52:54:00:00:00:0A'/>"
        "<virtualport type='openvswitch'><portdata>a &lt;b&gt; \"c\"</portdata></virtualport>"
        "</interface></devices></domain>"
    )
    async with BrokerClient(broker_proc.url, broker_proc.token("controller"), retry=FAST) as ctl:
        await ctl.create_migration(dom, "host-a", "host-b")
        up = await ctl.upload(dom, xml)
        rec = await ctl.get_interface(dom, "52:54:00:00:00:0a")

    assert up.generations == {"52:54:00:00:00:0a": 1}
    assert rec.interface is not None and rec.interface.portdata == 'a <b> "c"'


async def test_a_create_whose_answer_was_lost_is_retried_idempotently(
    broker_proc: BrokerProcess,
) -> None:
    """The broker creates the migration but its answer never arrives (a proxy turns
    it into a 503); the client's retry must get the same migration, not 409."""
    forwarded: list[dict[str, object]] = []

    async def lossy(request: web.Request) -> web.Response:
        body = await request.json()
        forwarded.append(body)
        async with BrokerClient(broker_proc.url, broker_proc.token("controller")) as real:
            resp = await real._t.request("POST", "/v1/migrations", json_body=body)
        if len(forwarded) == 1:
            return web.json_response({"title": "answer lost"}, status=503)
        return web.Response(status=resp.status, body=resp.body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/migrations", lossy)
    async with TestServer(app) as server:
        url = str(server.make_url("")).rstrip("/")
        token = broker_proc.token("controller")
        async with BrokerClient(url, token, retry=FAST) as client:
            dom = str(uuid.uuid4())
            m = await client.create_migration(dom, "host-a", "host-b")

    assert len(forwarded) == 2
    assert forwarded[0] == forwarded[1]  # the same generated id both times
    assert m.id == forwarded[0]["id"] and str(m.id).startswith("mig-")
    assert m.domain_uuid == dom and m.state == MigrationState.PENDING


async def test_events_hand_out_each_migrations_latest_change(broker_proc: BrokerProcess) -> None:
    async with BrokerClient(broker_proc.url, broker_proc.token("controller"), retry=FAST) as c:
        dom = str(uuid.uuid4())
        m = await c.create_migration(dom, "host-a", "host-b")
        up = await c.upload(dom, [iface("52:54:00:00:00:01", "pd")])
        stream = c.events(m.revision - 1)
        migration = await anext(stream)
        await stream.aclose()
    assert (migration.id, migration.state) == (m.id, MigrationState.UPLOADED)
    assert migration.revision == up.revision
    assert [v.mac for v in migration.interfaces] == ["52:54:00:00:00:01"]


async def test_an_unreadable_event_is_a_bad_response() -> None:
    """A stream whose event is not JSON (or not a migration): BadResponse, not a crash."""

    def streaming(event: bytes) -> web.Application:
        async def stream(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(event)
            return resp

        app = web.Application()
        app.router.add_get("/v1/events", stream)
        return app

    for event, why in ((b"data: {not json\n\n", "unreadable JSON"), (b"data: {}\n\n", "not a")):
        app = streaming(event)
        server = TestServer(app)
        await server.start_server()
        try:
            async with BrokerClient(str(server.make_url("")), "t", retry=FAST) as c:
                with pytest.raises(BadResponse, match=why):
                    async for _ in c.events(0):
                        pass
        finally:
            await server.close()
