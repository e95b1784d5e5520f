"""Helpers for the API tests (a module of its own: conftest modules are not importable)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from testkit import mac as mac
from vifbroker.store.sqlite import SQLiteStore

PROBLEM = "application/problem+json"
REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "corpus" / "libvirt"

PORTDATA_HOSTILE = 'q"uote\'s\nnew\r\nline -- a=b=c <tag> &amp; é ü 日本 🚀🧪 \t end'


def iface(
    mac: str = "52:54:00:12:34:56", portdata: str | None = "pd-1", **extra: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "mac": mac,
        "type": "bridge",
        "source": {"bridge": "br-int"},
        "target_dev": "vnet0",
        "model": "virtio",
        "virtualport": {
            "type": "openvswitch",
            "parameters": {
                "interfaceid": "09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f",
                "profileid": "gold",
            },
        },
        "vlan": {"trunk": True, "tags": [{"id": 42}, {"id": 48, "native_mode": "untagged"}]},
        "mtu": 9000,
        "link_state": "up",
        "bandwidth": {"inbound": {"average": 1000, "peak": 5000, "burst": 1024}},
    }
    if portdata is not None:
        doc["virtualport"]["portdata"] = portdata
    doc.update(extra)
    return doc


class Clock:
    """Wall-clock time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class Broker:
    client: TestClient[Any, Any]
    store: SQLiteStore
    clock: Clock
    tokens: dict[str, str]
    violations: list[str] = field(default_factory=list)

    def auth(self, who: str = "controller") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def create(
        self,
        domain_uuid: str | None = None,
        *,
        src: str = "src",
        dst: str = "dst",
        who: str = "controller",
        **extra: Any,
    ) -> dict[str, Any]:
        body = {
            "domain_uuid": domain_uuid or str(uuid.uuid4()),
            "source_host": src,
            "destination_host": dst,
            **extra,
        }
        resp = await self.client.post("/v1/migrations", json=body, headers=self.auth(who))
        assert resp.status == 201, await resp.text()
        doc: dict[str, Any] = await resp.json()
        return doc

    async def upload(
        self, domain_uuid: str, *ifaces: dict[str, Any], who: str = "controller"
    ) -> dict[str, Any]:
        resp = await self.client.put(
            f"/v1/domains/{domain_uuid}/interfaces",
            json={"interfaces": list(ifaces)},
            headers=self.auth(who),
        )
        assert resp.status == 200, await resp.text()
        doc: dict[str, Any] = await resp.json()
        return doc

    async def results(
        self, migration_id: str, results: list[dict[str, Any]], who: str = "controller"
    ) -> dict[str, Any]:
        resp = await self.client.post(
            f"/v1/migrations/{migration_id}/results",
            json={"results": results},
            headers=self.auth(who),
        )
        assert resp.status == 200, await resp.text()
        doc: dict[str, Any] = await resp.json()
        return doc


async def problem(resp: Any, status: int, slug: str) -> dict[str, Any]:
    """Assert ``resp`` is the problem ``slug`` with ``status``; return its body."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == PROBLEM, text
    doc: dict[str, Any] = await resp.json(content_type=None)
    assert doc["type"] == f"urn:vifbroker:problem:{slug}", doc
    assert doc["status"] == status
    assert doc["title"] and doc["detail"]
    return doc
