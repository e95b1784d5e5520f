"""A broker process tunes its cyclic garbage collector (vifbroker.gctune).

With CPython's defaults a young collection ran every 700 container
allocations: under bench_upload about 890 young and 7 full collections in
7 s (0.6 CPU-s, ~25 us an upload). ``vifbroker serve`` freezes what it built
at startup and collects the young generation every 50,000 allocations.
Read back from the broker's own ``python_gc_collections_total``.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from served import served_broker

MAC = "52:54:00:00:00:{:02x}"


async def young_collections(s: aiohttp.ClientSession, url: str) -> float:
    async with s.get(url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "python_gc_collections_total" and sample.labels["generation"] == "0":
                return sample.value
    raise AssertionError("no python_gc_collections_total{generation=0}")


async def test_a_broker_runs_few_young_collections_under_load(tmp_path: Path) -> None:
    async with served_broker(tmp_path) as b, aiohttp.ClientSession() as s:
        before = await young_collections(s, b.url)
        for i in range(200):
            domain = f"6f1a3c2e-0000-4000-8000-{i:012x}"
            create = {"domain_uuid": domain, "source_host": "src", "destination_host": "dst"}
            async with s.post(b.url + "/v1/migrations", json=create, headers=b.auth()) as resp:
                assert resp.status == 201, await resp.text()
            for n in range(3):
                body = json.dumps({"mac": MAC.format(n), "virtualport": {"portdata": "p" * 64}})
                async with s.put(
                    f"{b.url}/v1/domains/{domain}/interfaces/{MAC.format(n)}",
                    data=body,
                    headers={**b.auth("src"), "Content-Type": "application/json"},
                ) as resp:
                    assert resp.status == 200, await resp.text()
            async with s.get(f"{b.url}/v1/hosts/dst/inbox", headers=b.auth("dst")) as resp:
                assert resp.status == 200
        # 1,000 requests: about a dozen young collections at CPython's defaults
        assert await young_collections(s, b.url) - before <= 2
