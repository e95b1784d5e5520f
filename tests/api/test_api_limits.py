"""Issue 8, finding 1: every dimension a client controls is bounded, and the
worst body the limits allow, of every shape, leaves /healthz answering fast.

The first tests run the in-process broker with small limits: at the limit an
upload is stored, one past it is refused with 413 in JSON and XML alike. The
last test runs a real broker process with its default limits and sends the
largest document of each shape while another process polls /healthz.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_helpers import Broker, iface, mac, problem
from served import PollStats, Served, healthz_poller, served_broker

from vifbroker.model import Interface, codec
from vifbroker.server.config import Settings

SMALL = {
    "max_interfaces_per_document": 4,
    "max_attributes_per_element": 10,
    "max_keys": 3,
    "max_vlan_tags": 3,
    "max_vifs_per_migration": 6,
    "max_portdata_bytes": 16,
}
XML = {"Content-Type": "application/xml"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(SMALL)


def _xml(*docs: dict[str, Any]) -> bytes:
    ifaces = [Interface.model_validate(d) for d in docs]
    return codec.interfaces_to_xml(ifaces).encode()


def _shaped(n: int, **extra: Any) -> dict[str, Any]:
    return iface(mac(n), portdata="p", **extra)


# Each shape as (at the limit, one past it).
SHAPES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
    "interfaces": ([_shaped(i) for i in range(4)], [_shaped(i) for i in range(5)]),
    "source-keys": ([_shaped(1, source={f"k{i}": "v" for i in range(3)})],
                    [_shaped(1, source={f"k{i}": "v" for i in range(4)})]),
    "address-keys": ([_shaped(1, type="hostdev", source={"address": {f"a{i}": "1"
                                                                     for i in range(3)}})],
                     [_shaped(1, type="hostdev", source={"address": {f"a{i}": "1"
                                                                     for i in range(4)}})]),
    "parameters": ([_shaped(1, virtualport={"type": "openvswitch", "portdata": "p",
                                            "parameters": {f"p{i}": "v" for i in range(3)}})],
                   [_shaped(1, virtualport={"type": "openvswitch", "portdata": "p",
                                            "parameters": {f"p{i}": "v" for i in range(4)}})]),
    "vlan-tags": ([_shaped(1, vlan={"tags": [{"id": i} for i in range(3)]})],
                  [_shaped(1, vlan={"tags": [{"id": i} for i in range(4)]})]),
    "portdata": ([iface(mac(1), portdata="x" * 16)], [iface(mac(1), portdata="x" * 17)]),
}


@pytest.mark.parametrize("encoding", ["json", "xml"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_each_dimension_at_and_past_its_limit(
    broker: Broker, shape: str, encoding: str
) -> None:
    at, past = SHAPES[shape]
    m = await broker.create()
    url = f"/v1/domains/{m['domain_uuid']}/interfaces"

    async def put(docs: list[dict[str, Any]]) -> aiohttp.ClientResponse:
        if encoding == "json":
            return await broker.client.put(url, json={"interfaces": docs}, headers=broker.auth())
        return await broker.client.put(url, data=_xml(*docs), headers={**broker.auth(), **XML})

    resp = await put(past)
    await problem(resp, 413, "payload-too-large")
    resp = await broker.client.get(url, headers=broker.auth())
    await problem(resp, 404, "not-found")  # nothing of the refused upload was stored
    resp = await put(at)
    assert resp.status == 200, await resp.text()


async def test_xml_attributes_per_element_are_bounded(broker: Broker) -> None:
    m = await broker.create()
    url = f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(1)}"
    # <source> with 11 attributes (more than 10): refused before they are read.
    attrs = " ".join(f"a{i}='v'" for i in range(11))
    body = f"<interface><mac address='{mac(1)}'/><source {attrs}/></interface>".encode()
    resp = await broker.client.put(url, data=body, headers={**broker.auth(), **XML})
    doc = await problem(resp, 413, "payload-too-large")
    assert "attributes" in doc["detail"]


async def test_a_domain_document_counts_its_interfaces(broker: Broker) -> None:
    m = await broker.create()
    devices = "".join(
        f"<interface type='bridge'><mac address='{mac(i)}'/></interface><disk/>" for i in range(5)
    )
    body = f"<domain><devices>{devices}</devices></domain>".encode()
    resp = await broker.client.put(f"/v1/domains/{m['domain_uuid']}/interfaces", data=body,
                                   headers={**broker.auth(), **XML})
    await problem(resp, 413, "payload-too-large")


@pytest.mark.parametrize("settings_overrides", [{"max_running_domains": 3}])
async def test_running_domains_per_heartbeat_are_bounded(broker: Broker) -> None:
    doms = [str(uuid.uuid4()) for _ in range(4)]
    for count, status in ((4, 413), (3, 200)):
        resp = await broker.client.put("/v1/hosts/src", json={"running_domains": doms[:count]},
                                       headers=broker.auth("src"))
        assert resp.status == status, await resp.text()
    resp = await broker.client.get("/v1/hosts/src", headers=broker.auth())
    assert len((await resp.json())["running_domains"]) == 3


async def test_vifs_per_migration_are_bounded_across_uploads(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], *[_shaped(i) for i in range(4)])
    await broker.upload(m["domain_uuid"], *[_shaped(i) for i in range(2, 6)])  # 6 in all
    resp = await broker.client.put(
        f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(7)}", json=_shaped(7),
        headers=broker.auth())
    doc = await problem(resp, 413, "payload-too-large")
    assert "at most 6" in doc["detail"]
    resp = await broker.client.get(f"/v1/migrations/{m['id']}", headers=broker.auth())
    assert len((await resp.json())["interfaces"]) == 6


@pytest.mark.parametrize("inline", [0])
async def test_large_bodies_are_decoded_in_the_worker_with_the_same_answers(
    tmp_path: Path, inline: int
) -> None:
    # inline_body_bytes=0 sends every body to the worker process: the answers
    # (success, 400, 413, 422) are the ones the inline path gives.
    env = {"VIFBROKER_INLINE_BODY_BYTES": str(inline), "VIFBROKER_MAX_KEYS": "3"}
    async with served_broker(tmp_path, env) as b, aiohttp.ClientSession() as s:
        domain = str(uuid.uuid4())
        async with s.post(b.url + "/v1/migrations", headers=b.auth(), json={
                "domain_uuid": domain, "source_host": "src", "destination_host": "dst"}) as r:
            assert r.status == 201, await r.text()
        url = f"{b.url}/v1/domains/{domain}/interfaces"
        cases = [
            ({"interfaces": [iface(mac(1))]}, 200),
            ({"interfaces": [iface(mac(1), source={f"k{i}": "v" for i in range(4)})]}, 413),
            ({"interfaces": [{"mac": "nope"}]}, 422),
        ]
        for body, status in cases:
            async with s.put(url, headers=b.auth(), json=body) as r:
                assert r.status == status, await r.text()
        async with s.put(url, headers={**b.auth(), **XML}, data=b"<interfaces>") as r:
            assert r.status == 400
            assert (await r.json())["type"] == "urn:vifbroker:problem:malformed"


# ------------------------------------------------------------ the worst bodies


def _worst_bodies(domain: str) -> list[tuple[str, str, str, bytes, int]]:
    """(name, method, content type, body, expected status) at the default limits."""
    d = Settings()
    limit = d.max_body_bytes
    keys = {f"k{i:02d}": "v" * 8 for i in range(d.max_keys)}
    tags = [{"id": i} for i in range(d.max_vlan_tags)]

    def big_iface(i: int, ntags: int) -> dict[str, Any]:
        return {"mac": mac(i), "type": "bridge", "source": keys,
                "virtualport": {"type": "openvswitch", "parameters": keys, "portdata": "x" * 64},
                "vlan": {"trunk": True, "tags": tags[:ntags]}}

    # As many interfaces as allowed, each with as many keys and tags as fit in the body.
    per_iface = limit // d.max_interfaces_per_document
    one = len(json.dumps(big_iface(0, 0))) + 10
    ntags = min(d.max_vlan_tags, max(1, (per_iface - one) // 10))
    json_bulk = json.dumps({"interfaces": [big_iface(i, ntags) for i in range(
        d.max_interfaces_per_document)]}).encode()
    xml_ifaces = [Interface.model_validate(big_iface(i, ntags // 2))
                  for i in range(d.max_interfaces_per_document)]
    xml_bulk = codec.interfaces_to_xml(xml_ifaces, pretty=False).encode()
    # A domain whose other devices fill the body: skipped in C, never read.
    junk = b"<disk type='file'><source file='/x'/></disk>" * ((limit - len(xml_bulk)) // 48)
    domain_doc = (b"<domain><devices>" + xml_bulk.removeprefix(b"<interfaces>").removesuffix(
        b"</interfaces>") + junk + b"</devices></domain>")
    one_big = json.dumps(big_iface(1, d.max_vlan_tags)).encode()
    portdata = json.dumps(iface(mac(1), portdata="x" * d.max_portdata_bytes)).encode()
    # Past the limits, as large as the body allows:
    attrs = (b"<interface><mac address='52:54:00:00:00:01'/><source "
             + b" ".join(b"a%d='v'" % i for i in range(limit // 12)) + b"/></interface>")
    src_keys = json.dumps({"interfaces": [{"mac": mac(1), "source": {
        f"k{i}": "v" for i in range(limit // 12)}}]}).encode()
    many_tags = json.dumps({"interfaces": [{"mac": mac(1), "vlan": {
        "tags": [{"id": 1}] * (limit // 11)}}]}).encode()
    many_ifaces = json.dumps({"interfaces": [{"mac": mac(i)} for i in range(
        limit // 30)]}).encode()
    xml_many = b"<interfaces>" + b"<interface/>" * (limit // 13) + b"</interfaces>"
    small_tokens = b'{"interfaces":[' + b",".join([b"1"] * (limit // 2 - 20)) + b"]}"
    bulk = f"/v1/domains/{domain}/interfaces"
    single = f"{bulk}/{mac(1)}"
    j, x = "application/json", "application/xml"
    return [
        ("json-bulk-at-limits", bulk, j, json_bulk, 200),
        ("xml-bulk-at-limits", bulk, x, xml_bulk, 200),
        ("xml-domain-filled", bulk, x, domain_doc, 200),
        ("json-one-at-limits", single, j, one_big, 200),
        ("json-portdata-at-limit", single, j, portdata, 200),
        ("xml-attributes-past", single, x, attrs, 413),
        ("json-source-keys-past", bulk, j, src_keys, 413),
        ("json-vlan-tags-past", bulk, j, many_tags, 413),
        ("json-interfaces-past", bulk, j, many_ifaces, 413),
        ("xml-interfaces-past", bulk, x, xml_many, 413),
        ("json-small-tokens", bulk, j, small_tokens, 422),
        ("body-past-limit", bulk, j, b" " * (limit + 1), 413),
    ]


#: Rounds of the whole attack: the test passes when one round has every
#: /healthz under the bound. A broker that stalls fails every round; a shared
#: 2-core machine that schedules the poller late now and then fails one.
ROUNDS = 3
BOUND_MS = 100


async def _attack_round(
    b: Served, s: aiohttp.ClientSession, domain: str, shapes: list[Any]
) -> tuple[PollStats, dict[str, int], list[tuple[str, float]]]:
    seen: dict[str, int] = {}
    phases: list[tuple[str, float]] = []
    with healthz_poller(b.url) as poller:
        for name, url, ctype, body, _ in shapes:
            phases.append((name, time.time()))
            async with s.put(b.url + url, data=body,
                             headers={**b.auth(), "Content-Type": ctype}) as r:
                seen[name] = r.status
                await r.read()
        # Reading back the fullest migration the limits allow, in both encodings.
        phases.append(("reads", time.time()))
        for accept in ("application/json", "application/xml"):
            async with s.get(f"{b.url}/v1/domains/{domain}/interfaces",
                             headers={**b.auth(), "Accept": accept}) as r:
                assert r.status == 200
                await r.read()
        async with s.get(f"{b.url}/v1/hosts/dst/inbox?after=0", headers=b.auth()) as r:
            assert r.status == 200
            await r.read()
        stats = poller.stop()
    return stats, seen, phases


async def test_worst_bodies_leave_healthz_fast(tmp_path: Path) -> None:
    domain = str(uuid.uuid4())
    shapes = _worst_bodies(domain)
    rounds = []
    async with served_broker(tmp_path) as b, aiohttp.ClientSession() as s:
        async with s.post(b.url + "/v1/migrations", headers=b.auth(), json={
                "domain_uuid": domain, "source_host": "src", "destination_host": "dst"}) as r:
            assert r.status == 201
        for _ in range(ROUNDS):
            stats, seen, phases = await _attack_round(b, s, domain, shapes)
            assert seen == {name: status for name, _, _, _, status in shapes}
            assert stats.errors == 0 and stats.count >= 10
            rounds.append(stats)
            print("HEALTHZ_UNDER_WORST_BODIES", json.dumps(stats.__dict__), json.dumps(phases))
            if stats.worst_ms < BOUND_MS:
                break
    assert min(r.worst_ms for r in rounds) < BOUND_MS, rounds
