"""Issue 8, findings 5 and 6: headers, path segments and bodies are read strictly.

Each case here answered wrongly before (a 500, a number read from non-ASCII
digits, a weak tag that matched, a host named "B\\n", a MAC nobody can own, a
body in an unknown coding read as plain, oldest first, a version in Server).
"""

from __future__ import annotations

import gzip
import json
import uuid

import pytest
from api_helpers import Broker, iface, mac, problem

from vifbroker.model import codec, normalize_mac, normalize_uuid

# --------------------------------------------------------------- finding 5: headers


@pytest.mark.parametrize("value", ['"²"', '"٣"', '"1_0"', '" 1"', '"1", "2"', "*", '"-1"'])
async def test_if_match_takes_ascii_digits_only(broker: Broker, value: str) -> None:
    m = await broker.create()
    url = f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(1)}"
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    resp = await broker.client.put(url, json=iface(mac(1)), headers={**broker.auth(),
                                                                     "If-Match": value})
    await problem(resp, 400, "malformed")
    # Nothing was written: still generation 1.
    resp = await broker.client.get(url, headers=broker.auth())
    assert resp.headers["ETag"] == '"1"'


async def test_if_match_is_a_strong_comparison(broker: Broker) -> None:
    m = await broker.create()
    url = f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(1)}"
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    # RFC 9110 13.1.1: a weak entity tag never matches, even the current one.
    resp = await broker.client.put(url, json=iface(mac(1)), headers={**broker.auth(),
                                                                     "If-Match": 'W/"1"'})
    doc = await problem(resp, 412, "precondition-failed")
    assert doc["current_generation"] == 1
    resp = await broker.client.put(url, json=iface(mac(1)), headers={**broker.auth(),
                                                                     "If-Match": '"1"'})
    assert resp.status == 200 and resp.headers["ETag"] == '"2"'


async def test_bulk_put_refuses_if_match(broker: Broker) -> None:
    m = await broker.create()
    resp = await broker.client.put(
        f"/v1/domains/{m['domain_uuid']}/interfaces",
        json={"interfaces": [iface(mac(1))]},
        headers={**broker.auth(), "If-Match": '"0"'},
    )
    await problem(resp, 400, "malformed")
    resp = await broker.client.get(f"/v1/domains/{m['domain_uuid']}/interfaces",
                                   headers=broker.auth())
    await problem(resp, 404, "not-found")  # nothing was stored


@pytest.mark.parametrize("value", ["²", "٣", "1_0", "-1", "99999999999999999999"])
async def test_last_event_id_takes_ascii_digits_only(broker: Broker, value: str) -> None:
    resp = await broker.client.get("/v1/events", headers={**broker.auth(),
                                                           "Last-Event-ID": value})
    await problem(resp, 400, "malformed")


@pytest.mark.parametrize(
    "query", ["after=٣", "after=1_0", "after=%C2%B2", "wait=\u0661", "wait=nan", "wait=inf",
              "wait=1e1", "after=+1"]
)
async def test_query_numbers_take_ascii_digits_only(broker: Broker, query: str) -> None:
    resp = await broker.client.get(f"/v1/hosts/src/inbox?{query}", headers=broker.auth())
    await problem(resp, 400, "malformed")


async def test_list_cursor_takes_ascii_digits_only(broker: Broker) -> None:
    for cursor in ("٣", "1_0", " 3"):
        resp = await broker.client.get("/v1/migrations", params={"cursor": cursor},
                                       headers=broker.auth())
        await problem(resp, 400, "malformed")


# ----------------------------------------------------------- finding 6: validation


async def test_host_path_with_a_trailing_newline_is_refused(broker: Broker) -> None:
    resp = await broker.client.put("/v1/hosts/B%0A", json={}, headers=broker.auth())
    await problem(resp, 422, "invalid")
    resp = await broker.client.get("/v1/hosts", headers=broker.auth())
    assert [h["name"] for h in (await resp.json())["hosts"]] == []


BAD_UUIDS = [
    "0f4b6c1e1-d2b-4a53-9b8e-2f9d6a7c8e01",   # dashes misplaced
    "0f4b6c1e-1d2b4a53-9b8e-2f9d-6a7c8e01",
    "{0f4b6c1e-1d2b-4a53-9b8e-2f9d6a7c8e01}",
    "urn:uuid:0f4b6c1e-1d2b-4a53-9b8e-2f9d6a7c8e01",
    " 0f4b6c1e-1d2b-4a53-9b8e-2f9d6a7c8e01",
    "0f4b6c1e-1d2b-4a53-9b8e-2f9d6a7c8e01\n",
]

BAD_MACS = [
    " 52:54:00:00:00:01", "52:54:00:00:00:01 ", "52:54:00:00:00:01\n",
    "01:00:5e:00:00:01",  # multicast
    "33:33:00:00:00:01",  # IPv6 multicast
    "ff:ff:ff:ff:ff:ff",  # broadcast
    "00:00:00:00:00:00",  # all zero
    "000000000000",
]


@pytest.mark.parametrize("value", BAD_UUIDS)
def test_uuid_spellings_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a UUID"):
        normalize_uuid(value)


@pytest.mark.parametrize("value", BAD_MACS)
def test_macs_nobody_can_own_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        normalize_mac(value)


def test_good_spellings_still_normalise() -> None:
    assert normalize_uuid("0F4B6C1E1D2B4A539B8E2F9D6A7C8E01") == (
        "0f4b6c1e-1d2b-4a53-9b8e-2f9d6a7c8e01")
    assert normalize_mac("52-54-00-AB-CD-EF") == "52:54:00:ab:cd:ef"
    assert normalize_mac("02aabbccddee") == "02:aa:bb:cc:dd:ee"


@pytest.mark.parametrize("value", BAD_UUIDS[:4])
async def test_bad_uuid_in_a_create_body_is_422(broker: Broker, value: str) -> None:
    resp = await broker.client.post(
        "/v1/migrations",
        json={"domain_uuid": value, "source_host": "src", "destination_host": "dst"},
        headers=broker.auth(),
    )
    await problem(resp, 422, "invalid")


@pytest.mark.parametrize("value", BAD_MACS)
async def test_bad_mac_in_any_encoding_is_422(broker: Broker, value: str) -> None:
    m = await broker.create()
    base = f"/v1/domains/{m['domain_uuid']}/interfaces"
    resp = await broker.client.put(base, json={"interfaces": [iface(value)]},
                                   headers=broker.auth())
    await problem(resp, 422, "invalid")
    xml = codec.interface_to_xml(codec.parse_interface(
        codec.interface_to_xml(_valid(iface(mac(1)))))).replace(mac(1), value)
    resp = await broker.client.put(base, data=xml.encode(), headers={
        **broker.auth(), "Content-Type": "application/xml"})
    await problem(resp, 422, "invalid")


def _valid(doc: dict[str, object]) -> codec.Interface:
    return codec.Interface.model_validate(doc)


@pytest.mark.parametrize("value", ["%2052:54:00:00:00:01", "01:00:5e:00:00:01",
                                   "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"])
async def test_bad_mac_in_the_path_is_422(broker: Broker, value: str) -> None:
    m = await broker.create()
    resp = await broker.client.get(f"/v1/domains/{m['domain_uuid']}/interfaces/{value}",
                                   headers=broker.auth())
    await problem(resp, 422, "invalid")


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "x-foo", "gzip, gzip"])
async def test_unknown_content_encoding_is_415(broker: Broker, encoding: str) -> None:
    resp = await broker.client.post(
        "/v1/migrations",
        data=json.dumps({"domain_uuid": str(uuid.uuid4()), "source_host": "src",
                         "destination_host": "dst"}).encode(),
        headers={**broker.auth(), "Content-Type": "application/json",
                 "Content-Encoding": encoding},
    )
    await problem(resp, 415, "unsupported-media-type")


async def test_gzip_body_is_decoded(broker: Broker) -> None:
    body = {"domain_uuid": str(uuid.uuid4()), "source_host": "src", "destination_host": "dst"}
    resp = await broker.client.post(
        "/v1/migrations",
        data=gzip.compress(json.dumps(body).encode()),
        headers={**broker.auth(), "Content-Type": "application/json",
                 "Content-Encoding": "gzip"},
    )
    assert resp.status == 201, await resp.text()


async def test_migrations_are_listed_newest_first(broker: Broker) -> None:
    created = [(await broker.create())["id"] for _ in range(3)]
    resp = await broker.client.get("/v1/migrations", headers=broker.auth())
    assert [m["id"] for m in (await resp.json())["migrations"]] == created[::-1]


async def test_server_header_names_no_versions(broker: Broker) -> None:
    for url, headers in (("/healthz", {}), ("/v1/migrations", {}), ("/nowhere", {}),
                         ("/v1/migrations", broker.auth())):
        resp = await broker.client.get(url, headers=headers)
        assert resp.headers["Server"] == "vifbroker", url
