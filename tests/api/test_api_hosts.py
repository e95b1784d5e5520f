"""Hosts: heartbeat, list, read."""

from __future__ import annotations

from datetime import datetime

from api_helpers import Broker, problem

HEARTBEAT = {
    "agent_version": "0.1.0",
    "backends": [
        {
            "name": "openvswitch",
            "available": True,
            "interface_types": ["bridge", "network"],
            "virtualport_types": ["openvswitch"],
        },
        {"name": "noop", "available": False, "detail": "disabled"},
    ],
}


async def test_heartbeat_list_and_get(broker: Broker) -> None:
    resp = await broker.client.put("/v1/hosts/src", json=HEARTBEAT, headers=broker.auth("src"))
    assert resp.status == 200, await resp.text()
    host = await resp.json()
    assert host["name"] == "src"
    assert host["agent_version"] == "0.1.0"
    assert [b["name"] for b in host["backends"]] == ["openvswitch", "noop"]
    datetime.fromisoformat(host["last_seen"])

    resp = await broker.client.put("/v1/hosts/dst", json={}, headers=broker.auth())
    assert resp.status == 200

    resp = await broker.client.get("/v1/hosts", headers=broker.auth())
    assert sorted(h["name"] for h in (await resp.json())["hosts"]) == ["dst", "src"]

    resp = await broker.client.get("/v1/hosts/src", headers=broker.auth("src"))
    assert (await resp.json())["agent_version"] == "0.1.0"


async def test_host_errors(broker: Broker) -> None:
    resp = await broker.client.get("/v1/hosts/nowhere", headers=broker.auth())
    await problem(resp, 404, "not-found")
    resp = await broker.client.put("/v1/hosts/bad%20name", json={}, headers=broker.auth())
    await problem(resp, 422, "invalid")
    resp = await broker.client.put(
        "/v1/hosts/src", json={"backends": "many"}, headers=broker.auth("src")
    )
    await problem(resp, 422, "invalid")
    resp = await broker.client.put(
        "/v1/hosts/src", data=b"[",
        headers={**broker.auth("src"), "Content-Type": "application/json"},
    )
    await problem(resp, 400, "malformed")
