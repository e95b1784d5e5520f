"""The Python client sends an ``X-Request-Id`` the broker logs, so agent and broker logs join."""

from __future__ import annotations

import json
import re
import uuid

from ops_harness import Broker

from testkit import wait_until
from vifbroker.client import BrokerClient
from vifbroker.model import Interface


async def test_the_broker_logs_the_request_id_the_client_sent(
    broker: Broker, controller: BrokerClient
) -> None:
    domain = str(uuid.uuid4())
    m = await controller.create_migration(domain, "hv1", "hv2")
    vif = Interface.model_validate({"mac": "52:54:00:aa:bb:01", "type": "bridge"})
    await controller.upload(domain, [vif])

    def upload_lines() -> list[dict[str, object]]:
        docs = [json.loads(ln) for ln in broker.log().splitlines() if ln.startswith("{")]
        return [d for d in docs if d.get("migration") == m.id and d.get("msg") == "vif uploaded"]

    await wait_until(lambda: bool(upload_lines()))
    (line,) = upload_lines()
    assert line["mac"] == "52:54:00:aa:bb:01" and line["domain"] == domain
    # The client's ids are 16 hex digits; ids the broker makes up have a dash.
    assert re.fullmatch(r"[0-9a-f]{16}", str(line["request_id"])), line
