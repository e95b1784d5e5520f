"""Junk at every route: whatever arrives, the answer is never a 5xx (nor a hang)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from api_helpers import PROBLEM, Broker, iface, mac

ROUTES = [
    ("POST", "/v1/migrations"),
    ("GET", "/v1/migrations"),
    ("GET", "/v1/migrations/{id}"),
    ("POST", "/v1/migrations/{id}/complete"),
    ("POST", "/v1/migrations/{id}/cancel"),
    ("POST", "/v1/migrations/{id}/results"),
    ("PUT", "/v1/domains/{uuid}/interfaces/{mac}"),
    ("PUT", "/v1/domains/{uuid}/interfaces"),
    ("GET", "/v1/domains/{uuid}/interfaces"),
    ("GET", "/v1/domains/{uuid}/interfaces/{mac}"),
    ("GET", "/v1/hosts/{host}/inbox"),
    ("PUT", "/v1/hosts/{host}"),
    ("GET", "/v1/hosts"),
    ("GET", "/v1/hosts/{host}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
]

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<interface type='bridge'><mac address='52:54:00:00:00:01'/><virtualport>
<portdata>&lol3;</portdata></virtualport></interface>"""

XXE = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<interface type='bridge'><mac address='52:54:00:00:00:01'/><target dev='&e;'/></interface>"""

# (No percent-encoded "/": the conformance checker matches the decoded path.)
PATH_JUNK = ["..", "%00", "%2e%2e", "a" * 300, "☃", "%ff%fe", "52:54:00:00:00:01:02", "' OR 1=1"]

JSON_JUNK: list[Any] = [
    None, 0, -1, 1.5, 1e308, "", "x", [], {}, [[[]]], {"interfaces": None},
    {"interfaces": [None]}, {"interfaces": [{"mac": None}]}, {"results": [{}]},
    {"results": [{"mac": "52:54:00:00:00:01", "generation": 2**70, "status": "applied"}]},
    {"domain_uuid": 5, "source_host": [], "destination_host": {}},
    {"mac": "52:54:00:00:00:01", "virtualport": {"portdata": 12}},
    {"mac": "52:54:00:00:00:01", "virtualport": {"portdata": "\ud800"}},
    {"mac": "52:54:00:00:00:01", "source": {"<bad name>": "x"}},
    {"mac": "52:54:00:00:00:01", "vlan": {"tags": [{"id": 99999}]}},
    {"backends": [{"name": 1}]},
]


def _bodies(rng: random.Random) -> list[tuple[str, bytes]]:
    raw = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(4)]
    bodies = [("application/json", json.dumps(j).encode()) for j in JSON_JUNK]
    bodies += [("application/json", b"[" * 5000 + b"]" * 5000), ("application/json", b"\xff")]
    bodies += [("application/json", b'{"a": NaN}'), ("application/json", b"{\"a\":1}{}")]
    bodies += [("application/xml", b) for b in (BILLION_LAUGHS, XXE, b"<a>" * 3000, b"<<>>")]
    bodies += [("application/xml", b"<interfaces><foo/></interfaces>")]
    bodies += [("application/xml", b"<?xml version='1.0' encoding='klingon'?><interface/>")]
    bodies += [(ctype, b) for b in raw for ctype in ("application/json", "application/xml")]
    bodies += [("multipart/form-data; boundary=x", b"--x--"), ("", b"abc")]
    return bodies


@pytest.mark.parametrize("method, template", ROUTES, ids=[f"{m} {t}" for m, t in ROUTES])
async def test_junk_never_gives_a_5xx(broker: Broker, method: str, template: str) -> None:
    rng = random.Random(hash(template) & 0xFFFF)
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    good = {"id": m["id"], "uuid": m["domain_uuid"], "mac": mac(1), "host": "src"}
    paths = [template.format(**good)]
    for junk in PATH_JUNK:
        for key in ("id", "uuid", "mac", "host"):
            if "{" + key + "}" in template:
                paths.append(template.format(**{**good, key: junk}))
    queries = [
        "", "?after=-5&wait=abc", "?limit=99999999999999999999", "?state=%00&cursor=%ff",
        "?wait_for=applied&timeout=1e400", "?after=1e3", "?domain_uuid=&host=&limit=",
        "?timeout=-0&wait_for=applied", "?wait=0.0000001",
    ]
    calls: list[tuple[str, bytes | None, dict[str, str]]] = []
    for path in paths:
        calls.append((path + rng.choice(queries), None, {}))
    for ctype, body in _bodies(rng):
        calls.append((paths[0] + rng.choice(queries), body, {"Content-Type": ctype}))
    for accept in ("application/xml", "*/*;q=0", "text/html;q=abc", ",,;", "application/*"):
        calls.append((paths[0], None, {"Accept": accept}))
    for if_match in ('"x"', "W/\"1\"", '"99999999999999999999999"', ""):
        calls.append((paths[0], json.dumps(iface(mac(1))).encode(),
                      {"If-Match": if_match, "Content-Type": "application/json"}))

    for who in ("controller", "src", "other"):
        for url, body, headers in calls:
            resp = await broker.client.request(
                method, url, data=body, headers={**broker.auth(who), **headers}
            )
            text = await resp.text()
            assert resp.status < 500, (method, url, headers, resp.status, text)
            if resp.status >= 400:
                assert resp.content_type == PROBLEM, (url, text)
