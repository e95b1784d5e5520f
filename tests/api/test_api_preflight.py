"""POST /v1/hosts/{host}/preflight through the HTTP layer (verdict rules: tests/agent)."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import Broker, problem

from testkit import mac

HEARTBEAT = {
    "backends": [
        {
            "name": "openvswitch",
            "virtualport_types": ["openvswitch"],
            "bridges": ["br-int"],
            "max_portdata": 8,
        }
    ]
}


def ovs(n: int, bridge: str = "br-int", portdata: str = "pd") -> dict[str, Any]:
    return {
        "mac": mac(n),
        "type": "bridge",
        "source": {"bridge": bridge},
        "virtualport": {"type": "openvswitch", "portdata": portdata},
    }


async def test_verdicts_from_the_last_heartbeat(broker: Broker) -> None:
    resp = await broker.client.put("/v1/hosts/dst", json=HEARTBEAT, headers=broker.auth("dst"))
    assert resp.status == 200
    body = {"interfaces": [ovs(1), ovs(2, bridge="br-ex"), ovs(3, portdata="123456789")]}
    resp = await broker.client.post("/v1/hosts/dst/preflight", json=body, headers=broker.auth())
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["host"] == "dst" and doc["reporting"] is True and doc["last_seen"]
    assert [v["verdict"] for v in doc["verdicts"]] == ["ok", "fail", "fail"]

    broker.clock.advance(3 * 15 + 1)  # three default heartbeat intervals later
    resp = await broker.client.post("/v1/hosts/dst/preflight", json=body, headers=broker.auth())
    doc = await resp.json()
    assert doc["reporting"] is False
    assert {v["verdict"] for v in doc["verdicts"]} == {"fail"}


async def test_xml_document_for_a_host_never_seen(broker: Broker) -> None:
    xml = (
        f"<interface type='bridge'><mac address='{mac(1)}'/>"
        "<virtualport type='openvswitch'/></interface>"
    )
    resp = await broker.client.post(
        "/v1/hosts/nowhere/preflight?on_backend_mismatch=fail",
        data=xml,
        headers={**broker.auth(), "Content-Type": "application/xml"},
    )
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert (doc["reporting"], doc["last_seen"]) == (False, None)
    assert doc["verdicts"] == [
        {"mac": mac(1), "verdict": "fail", "backend": None,
         "reason": "host nowhere has never reported"}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "body", "status", "slug"),
    [
        ("?on_backend_mismatch=maybe", {"interfaces": [ovs(1)]}, 400, "malformed"),
        ("", {"interfaces": "none"}, 422, "invalid"),
        ("", {"interfaces": [ovs(1), ovs(1)]}, 200, ""),
    ],
)
async def test_bad_requests(
    broker: Broker, query: str, body: dict[str, Any], status: int, slug: str
) -> None:
    resp = await broker.client.post(
        f"/v1/hosts/dst/preflight{query}", json=body, headers=broker.auth()
    )
    if slug:
        await problem(resp, status, slug)
    else:
        assert resp.status == status


async def test_agents_may_not_ask_unless_agents_register_migrations(broker: Broker) -> None:
    resp = await broker.client.post(
        "/v1/hosts/dst/preflight", json={"interfaces": [ovs(1)]}, headers=broker.auth("dst")
    )
    await problem(resp, 403, "forbidden")
