from __future__ import annotations

from api_helpers import Broker, iface


async def test_smoke(broker: Broker) -> None:
    m = await broker.create()
    up = await broker.upload(m["domain_uuid"], iface())
    assert up["interfaces"][0]["generation"] == 1
