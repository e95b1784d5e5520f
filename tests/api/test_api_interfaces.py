"""Interface records: single and bulk uploads in JSON and XML, reads, ETags, limits."""

from __future__ import annotations

import uuid

import pytest
from api_helpers import CORPUS, PORTDATA_HOSTILE, Broker, iface, mac, problem
from lxml import etree

from vifbroker.model import Interface, codec

XML_HEADERS = {"Content-Type": "application/xml"}


def xml_of(doc: dict[str, object]) -> bytes:
    return codec.interface_to_xml(Interface.model_validate(doc)).encode("utf-8")


def portdata_in_xml(text: bytes) -> list[str]:
    root = etree.fromstring(text)
    return [codec.interface_from_element(el).portdata or "" for el in root.iter("interface")]


async def test_put_one_json_answers_generation_and_etag(broker: Broker) -> None:
    m = await broker.create()
    url = f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(1)}"
    for generation in (1, 2):
        resp = await broker.client.put(url, json=iface(mac(1)), headers=broker.auth())
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {
            "domain_uuid": m["domain_uuid"], "mac": mac(1), "generation": generation,
        }
        assert resp.headers["ETag"] == f'"{generation}"'


async def test_put_one_xml_and_path_normalisation(broker: Broker) -> None:
    m = await broker.create()
    # Upper-case UUID and dash-separated MAC in the path name the same record.
    url = f"/v1/domains/{m['domain_uuid'].upper()}/interfaces/52-54-00-00-00-01"
    resp = await broker.client.put(
        url, data=xml_of(iface(mac(1))), headers={**broker.auth(), **XML_HEADERS}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["mac"] == mac(1)
    resp = await broker.client.put(
        url, data=xml_of(iface(mac(1))),
        headers={**broker.auth(), "Content-Type": "text/xml; charset=utf-8"},
    )
    assert (await resp.json())["generation"] == 2


async def test_if_match(broker: Broker) -> None:
    m = await broker.create()
    url = f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(1)}"
    resp = await broker.client.put(
        url, json=iface(mac(1)), headers={**broker.auth(), "If-Match": '"0"'}
    )
    assert resp.status == 200
    resp = await broker.client.put(
        url, json=iface(mac(1)), headers={**broker.auth(), "If-Match": '"1"'}
    )
    assert resp.status == 200
    assert resp.headers["ETag"] == '"2"'
    resp = await broker.client.put(
        url, json=iface(mac(1)), headers={**broker.auth(), "If-Match": '"1"'}
    )
    doc = await problem(resp, 412, "precondition-failed")
    assert doc["current_generation"] == 2
    resp = await broker.client.put(
        url, json=iface(mac(1)), headers={**broker.auth(), "If-Match": "soon"}
    )
    await problem(resp, 400, "malformed")


async def test_body_mac_must_match_path(broker: Broker) -> None:
    m = await broker.create()
    resp = await broker.client.put(
        f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(1)}", json=iface(mac(2)),
        headers=broker.auth(),
    )
    await problem(resp, 422, "invalid")


async def test_bad_mac_or_uuid_in_path_is_422(broker: Broker) -> None:
    m = await broker.create()
    for url in (
        f"/v1/domains/{m['domain_uuid']}/interfaces/zz:54:00:00:00:01",
        "/v1/domains/not-a-uuid/interfaces/52:54:00:00:00:01",
        "/v1/domains/not-a-uuid/interfaces",
    ):
        resp = await broker.client.put(url, json=iface(mac(1)), headers=broker.auth())
        await problem(resp, 422, "invalid")
        resp = await broker.client.get(url, headers=broker.auth())
        await problem(resp, 422, "invalid")


async def test_no_active_migration_is_409(broker: Broker) -> None:
    domain = str(uuid.uuid4())
    resp = await broker.client.put(
        f"/v1/domains/{domain}/interfaces/{mac(1)}", json=iface(mac(1)), headers=broker.auth()
    )
    await problem(resp, 409, "no-active-migration")
    resp = await broker.client.put(
        f"/v1/domains/{domain}/interfaces", json={"interfaces": [iface(mac(1))]},
        headers=broker.auth(),
    )
    await problem(resp, 409, "no-active-migration")


async def test_bulk_json_is_all_or_nothing(broker: Broker) -> None:
    m = await broker.create()
    up = await broker.upload(m["domain_uuid"], iface(mac(1)), iface(mac(2)))
    assert up["domain_uuid"] == m["domain_uuid"]
    assert up["revision"] > m["revision"]
    assert up["interfaces"] == [
        {"mac": mac(1), "generation": 1}, {"mac": mac(2), "generation": 1},
    ]
    url = f"/v1/domains/{m['domain_uuid']}/interfaces"
    # One bad vif (MTU out of range) refuses the whole body: nothing changes.
    resp = await broker.client.put(
        url, json={"interfaces": [iface(mac(1)), iface(mac(3), mtu=1)]}, headers=broker.auth()
    )
    await problem(resp, 422, "invalid")
    resp = await broker.client.put(
        url, json={"interfaces": [iface(mac(1)), iface(mac(1))]}, headers=broker.auth()
    )
    await problem(resp, 422, "invalid")
    resp = await broker.client.put(url, json={"interfaces": []}, headers=broker.auth())
    await problem(resp, 422, "invalid")
    resp = await broker.client.get(url, headers=broker.auth())
    records = (await resp.json())["interfaces"]
    assert [(r["mac"], r["generation"]) for r in records] == [(mac(1), 1), (mac(2), 1)]


async def test_bulk_xml_interfaces_and_domain(broker: Broker) -> None:
    domain_xml = (CORPUS / "qemuxml2argvdata-net-openvswitch.xml").read_bytes()
    m = await broker.create("c7a5fdbd-edaf-9455-926a-d65c16db1809")
    url = f"/v1/domains/{m['domain_uuid']}/interfaces"
    resp = await broker.client.put(url, data=domain_xml, headers={**broker.auth(), **XML_HEADERS})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["interfaces"] == [{"mac": "00:11:22:33:44:55", "generation": 1}]

    listing = codec.interfaces_to_xml(
        [Interface.model_validate(iface(mac(1))), Interface.model_validate(iface(mac(2)))]
    ).encode()
    resp = await broker.client.put(url, data=listing, headers={**broker.auth(), **XML_HEADERS})
    assert resp.status == 200, await resp.text()
    assert [i["mac"] for i in (await resp.json())["interfaces"]] == [mac(1), mac(2)]

    # A <domain> whose <uuid> names another domain is refused.
    other = await broker.create()
    resp = await broker.client.put(
        f"/v1/domains/{other['domain_uuid']}/interfaces", data=domain_xml,
        headers={**broker.auth(), **XML_HEADERS},
    )
    await problem(resp, 422, "invalid")


@pytest.mark.parametrize(
    "body, status, slug",
    [
        (b"<interface type='bridge'><mac address='52:54:00:00:00:01'/>", 400, "malformed"),
        (b"", 400, "malformed"),
        (b"\xff\xfe<not xml", 400, "malformed"),
        (b"<interface type='bridge'><mac address='bogus'/></interface>", 422, "invalid"),
        (b"<interface type='bridge'/>", 422, "invalid"),
        (b"<network/>", 422, "invalid"),
        (
            b"<interface type='bridge'><mac address='52:54:00:00:00:01'/><mtu size='x'/>"
            b"</interface>",
            422,
            "invalid",
        ),
    ],
)
async def test_bad_xml(broker: Broker, body: bytes, status: int, slug: str) -> None:
    m = await broker.create()
    for url in (
        f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(1)}",
        f"/v1/domains/{m['domain_uuid']}/interfaces",
    ):
        resp = await broker.client.put(url, data=body, headers={**broker.auth(), **XML_HEADERS})
        await problem(resp, status, slug)


async def test_get_records_json_and_xml(broker: Broker) -> None:
    m = await broker.create()
    await broker.upload(m["domain_uuid"], iface(mac(1)), iface(mac(2), portdata=None))
    url = f"/v1/domains/{m['domain_uuid']}/interfaces"
    resp = await broker.client.get(url, headers=broker.auth())
    records = (await resp.json())["interfaces"]
    assert [r["mac"] for r in records] == [mac(1), mac(2)]
    first = records[0]
    assert first["domain_uuid"] == m["domain_uuid"]
    assert first["generation"] == 1
    assert first["interface"] == iface(mac(1))
    assert first["result"]["status"] == "pending"

    resp = await broker.client.get(f"{url}/{mac(1)}", headers=broker.auth())
    assert resp.headers["ETag"] == '"1"'
    assert (await resp.json())["interface"] == iface(mac(1))

    resp = await broker.client.get(url, headers={**broker.auth(), "Accept": "application/xml"})
    assert resp.content_type == "application/xml"
    root = etree.fromstring(await resp.read())
    assert root.tag == "interfaces"
    assert root.get("domain") == m["domain_uuid"]
    assert [e.find("mac").get("address") for e in root] == [mac(1), mac(2)]  # type: ignore[union-attr]

    resp = await broker.client.get(
        f"{url}/{mac(2)}", headers={**broker.auth(), "Accept": "text/html, application/xml;q=0.5"}
    )
    assert resp.status == 200
    parsed = codec.parse_interface(await resp.read())
    assert parsed == Interface.model_validate(iface(mac(2), portdata=None))


async def test_get_errors(broker: Broker) -> None:
    m = await broker.create()
    url = f"/v1/domains/{m['domain_uuid']}/interfaces"
    resp = await broker.client.get(url, headers=broker.auth())
    await problem(resp, 404, "not-found")
    await broker.upload(m["domain_uuid"], iface(mac(1)))
    resp = await broker.client.get(f"{url}/{mac(7)}", headers=broker.auth())
    await problem(resp, 404, "not-found")
    resp = await broker.client.get(url, headers={**broker.auth(), "Accept": "text/html"})
    await problem(resp, 406, "not-acceptable")
    resp = await broker.client.get(
        f"/v1/domains/{uuid.uuid4()}/interfaces", headers=broker.auth()
    )
    await problem(resp, 404, "not-found")


@pytest.mark.parametrize(
    "portdata",
    [
        PORTDATA_HOSTILE,
        "",
        '"leading quote',
        "--if-exists -- set Interface x external_ids:a=b",
        "{\"json\": [1, 2, {\"k\": \"v\"}]}",
        "ctrl\x01chars\x1f and \ufffe",
        "x" * 1000 + "🚀",
    ],
)
async def test_portdata_round_trips_byte_exactly_across_encodings(
    broker: Broker, portdata: str
) -> None:
    m = await broker.create()
    url = f"/v1/domains/{m['domain_uuid']}/interfaces"
    # JSON in, XML out.
    await broker.upload(m["domain_uuid"], iface(mac(1), portdata=portdata))
    resp = await broker.client.get(url, headers={**broker.auth(), "Accept": "application/xml"})
    assert resp.status == 200
    (got,) = portdata_in_xml(await resp.read())
    assert got.encode("utf-8") == portdata.encode("utf-8")

    # XML in, JSON out.
    resp = await broker.client.put(
        f"{url}/{mac(2)}", data=xml_of(iface(mac(2), portdata=portdata)),
        headers={**broker.auth(), **XML_HEADERS},
    )
    assert resp.status == 200, await resp.text()
    resp = await broker.client.get(f"{url}/{mac(2)}", headers=broker.auth())
    doc = await resp.json()
    assert doc["interface"]["virtualport"]["portdata"].encode("utf-8") == portdata.encode("utf-8")


async def test_wrong_content_type_is_415(broker: Broker) -> None:
    m = await broker.create()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/yaml"):
        resp = await broker.client.put(
            f"/v1/domains/{m['domain_uuid']}/interfaces/{mac(1)}", data=b"{}",
            headers={**broker.auth(), "Content-Type": ctype},
        )
        await problem(resp, 415, "unsupported-media-type")


@pytest.mark.parametrize(
    "settings_overrides", [{"max_body_bytes": 64 * 1024, "max_portdata_bytes": 1024}]
)
async def test_oversize_body_and_portdata_are_413(broker: Broker) -> None:
    m = await broker.create()
    url = f"/v1/domains/{m['domain_uuid']}/interfaces"
    big = [iface(mac(i), portdata="p" * 900) for i in range(100)]  # ~100 KiB
    resp = await broker.client.put(url, json={"interfaces": big}, headers=broker.auth())
    await problem(resp, 413, "payload-too-large")

    # Chunked (no Content-Length): the limit still holds while reading.
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b" " * 1024

    resp = await broker.client.put(
        url, data=chunks(), headers={**broker.auth(), "Content-Type": "application/json"}
    )
    await problem(resp, 413, "payload-too-large")

    # 1025 UTF-8 bytes of port data, though fewer characters.
    over = "é" * 512 + "x"
    resp = await broker.client.put(
        f"{url}/{mac(1)}", json=iface(mac(1), portdata=over), headers=broker.auth()
    )
    await problem(resp, 413, "payload-too-large")
    resp = await broker.client.put(
        f"{url}/{mac(1)}", json=iface(mac(1), portdata="é" * 512), headers=broker.auth()
    )
    assert resp.status == 200
