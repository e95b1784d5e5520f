"""The metrics that answer "is handoff working?", and the log keys that join logs.

Each figure is driven through the real app (loopback HTTP, SQLite), then read
back from ``GET /metrics`` parsed by prometheus-client's own parser.
"""

from __future__ import annotations

import json
import logging
import tomllib
from typing import Any

import pytest
from api_helpers import REPO, Broker, iface, mac
from prometheus_client.parser import text_string_to_metric_families

from testkit import wait_until
from vifbroker.model import portdata_digest
from vifbroker.server.logs import JsonFormatter, TextFormatter
from vifbroker.server.metrics import Metrics, failure_reason

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(broker: Broker) -> Samples:
    resp = await broker.client.get("/metrics")
    assert resp.status == 200
    out: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def test_uploads_results_and_handoff_latency(broker: Broker) -> None:
    m = await broker.create()
    dom = m["domain_uuid"]
    await broker.upload(dom, iface(mac(1), "a"), iface(mac(2), "b"), iface(mac(3), "c"))
    await broker.results(m["id"], [
        {"mac": mac(1), "generation": 1, "status": "applied", "digest": portdata_digest("a")},
        {"mac": mac(2), "generation": 1, "status": "applied", "digest": portdata_digest("x")},
        {"mac": mac(3), "generation": 1, "status": "skipped", "detail": "no local backend"},
    ])  # fmt: skip
    # The same result again (an agent retrying) changes nothing and counts nothing.
    await broker.results(m["id"], [
        {"mac": mac(1), "generation": 1, "status": "applied", "digest": portdata_digest("a")},
    ])  # fmt: skip
    # A new generation, then a late result for the old one: superseded, not counted.
    await broker.upload(dom, iface(mac(1), "a2"))
    await broker.results(m["id"], [
        {"mac": mac(1), "generation": 1, "status": "failed", "detail": "late"},
    ])  # fmt: skip
    s = await scrape(broker)
    assert value(s, "vifbroker_uploads_total") == 4
    assert value(s, "vifbroker_results_total", status="applied", reason="") == 1
    assert value(s, "vifbroker_results_total", status="skipped", reason="") == 1
    # A digest that does not match what was uploaded: failed, and says why.
    assert value(s, "vifbroker_results_total", status="failed", reason="digest-mismatch") == 1
    assert sum(v for (n, _), v in s.items() if n == "vifbroker_results_total") == 3
    # One vif went upload -> applied; its latency is in the histogram.
    assert value(s, "vifbroker_upload_to_applied_seconds_count") == 1
    assert value(s, "vifbroker_upload_to_applied_seconds_bucket", le="+Inf") == 1


async def test_auth_failures_by_reason(broker: Broker) -> None:
    bad = await broker.client.get("/v1/migrations", headers={"Authorization": "Bearer nope"})
    assert bad.status == 401
    missing = await broker.client.get("/v1/hosts")
    assert missing.status == 401
    other = await broker.client.get("/v1/hosts/src/inbox", headers=broker.auth("dst"))
    assert other.status == 403
    s = await scrape(broker)
    assert value(s, "vifbroker_auth_failures_total", reason="unauthenticated") == 2
    assert value(s, "vifbroker_auth_failures_total", reason="forbidden") == 1


async def test_expiries_and_heartbeat_age(broker: Broker) -> None:
    m = await broker.create(ttl_seconds=5)
    auth = broker.auth("dst")
    resp = await broker.client.put("/v1/hosts/dst", json={"backends": []}, headers=auth)
    assert resp.status == 200
    broker.clock.advance(30)

    async def expired() -> bool:
        return (await broker.store.get_migration(m["id"])).state == "expired"

    await wait_until(expired)
    s = await scrape(broker)
    assert value(s, "vifbroker_expiries_total") == 1
    assert value(s, "vifbroker_host_heartbeat_age_seconds", host="dst") >= 30


async def test_long_polls_are_kept_out_of_the_request_latency(broker: Broker) -> None:
    m = await broker.create()
    inbox = await broker.client.get(
        "/v1/hosts/dst/inbox", params={"after": "999999", "wait": "0.05"}, headers=broker.auth()
    )
    assert inbox.status == 200
    barrier = await broker.client.get(
        f"/v1/migrations/{m['id']}", params={"wait_for": "applied", "timeout": "0.05"},
        headers=broker.auth(),
    )  # fmt: skip
    assert barrier.status == 200
    plain = await broker.client.get(f"/v1/migrations/{m['id']}", headers=broker.auth())
    assert plain.status == 200
    s = await scrape(broker)
    routes = {dict(labels).get("route") for (n, labels) in s
              if n == "vifbroker_http_request_duration_seconds_count"}  # fmt: skip
    assert "/v1/hosts/{host}/inbox" not in routes
    count = "vifbroker_http_request_duration_seconds_count"
    assert value(s, count, method="GET", route="/v1/migrations/{id}", status="200") == 1
    held = "vifbroker_longpoll_duration_seconds_count"
    assert value(s, held, route="/v1/hosts/{host}/inbox") == 1
    assert value(s, held, route="/v1/migrations/{id}") == 1


async def test_build_info_and_process_metrics(broker: Broker) -> None:
    s = await scrape(broker)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    ((_, labels),) = [k for k in s if k[0] == "vifbroker_build_info"]
    assert dict(labels)["version"] == version
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes",
            "process_open_fds", "python_info"} <= names(s)  # fmt: skip


def test_resume_margin_and_late_landings() -> None:
    metrics = Metrics()
    for margin in (0.2, 0.01, -0.3):
        metrics.resumed(margin)
    assert metrics.registry.get_sample_value("vifbroker_resume_margin_seconds_count") == 3
    assert metrics.registry.get_sample_value("vifbroker_late_landings_total") == 1


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        ("digest mismatch: the destination read back other port data", "digest-mismatch"),
        ("port data read back differs from the record", "digest-mismatch"),
        ("no local backend handles type 'direct' (backends here: openvswitch)", "backend-mismatch"),
        ("gave up at the migration's deadline: no local port for vm-id x", "deadline"),
        ("no local port for vm-id x mac y", "port-missing"),
        ("openvswitch: ovs-vsctl: database connection failed", "backend-error"),
        (None, "unspecified"),
    ],
)
def test_failure_reasons_are_a_bounded_set(detail: str | None, reason: str) -> None:
    assert failure_reason(detail) == reason


async def test_log_records_carry_migration_domain_and_mac_as_keys(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vifbroker.server")
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(7)))
    await broker.results(m["id"], [{"mac": mac(7), "generation": 1, "status": "skipped"}])
    records = [r for r in caplog.records if getattr(r, "mac", None) == mac(7)]
    assert [r.getMessage() for r in records] == ["vif uploaded", "result skipped"]
    for record in records:
        doc: dict[str, Any] = json.loads(JsonFormatter().format(record))
        assert (doc["migration"], doc["domain"], doc["mac"]) == (m["id"], m["domain_uuid"], mac(7))
        assert m["id"] not in doc["msg"]
        record.request_id = None
        text = TextFormatter("%(message)s").format(record)
        assert f"migration={m['id']}" in text and f"mac={mac(7)}" in text
    # A post of several results is one line; its vifs are keys, in the order posted.
    caplog.clear()
    await broker.upload(m["domain_uuid"], iface(mac(8)), iface(mac(9)))
    (line,) = [r for r in caplog.records if r.getMessage() == "vif uploaded"]
    doc = json.loads(JsonFormatter().format(line))
    assert (doc["mac"], doc["generation"]) == (f"{mac(8)},{mac(9)}", "1,1")
    caplog.clear()
    await broker.results(
        m["id"],
        [
            {"mac": mac(9), "generation": 1, "status": "skipped"},
            {"mac": mac(8), "generation": 1, "status": "failed"},
        ],
    )
    (line,) = [r for r in caplog.records if r.getMessage().startswith("result")]
    doc = json.loads(JsonFormatter().format(line))
    assert doc["msg"] == "result failed/skipped"
    assert (doc["mac"], doc["generation"], doc["status"]) == (
        f"{mac(9)},{mac(8)}",
        "1,1",
        "skipped,failed",
    )


async def test_ready_and_the_oldest_migration_waiting_in_uploaded(broker: Broker) -> None:
    s = await scrape(broker)
    assert value(s, "vifbroker_ready") == 1
    assert value(s, "vifbroker_oldest_uploaded_migration_age_seconds") == 0
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    broker.clock.advance(900)
    s = await scrape(broker)
    assert value(s, "vifbroker_oldest_uploaded_migration_age_seconds") >= 900
    await broker.results(m["id"], [{"mac": mac(1), "generation": 1, "status": "skipped"}])
    assert value(await scrape(broker), "vifbroker_oldest_uploaded_migration_age_seconds") == 0
