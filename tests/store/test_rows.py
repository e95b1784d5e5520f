"""How a vif row holds an interface: its JSON without the port data, the port data apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from vifbroker.model import Interface, codec
from vifbroker.store.rows import join_interface, split_interface

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "libvirt"


def corpus_interfaces() -> list[Interface]:
    found: list[Interface] = []
    for path in sorted(CORPUS.glob("*.xml")):
        try:
            found += codec.parse_document(path.read_bytes()).interfaces
        except codec.XMLCodecError:
            continue  # a domain this subset does not take: other tests say which
    return found


SHAPES = [
    Interface(mac="52:54:00:00:00:01"),
    Interface.model_validate({"mac": "52:54:00:00:00:02", "virtualport": {"type": "openvswitch"}}),
    Interface.model_validate({"mac": "52:54:00:00:00:03", "virtualport": {"portdata": ""}}),
    Interface.model_validate(
        {
            "mac": "52:54:00:00:00:04",
            "type": "bridge",
            "source": {"bridge": "br-int"},
            "virtualport": {
                "type": "openvswitch",
                "parameters": {"interfaceid": "i-1"},
                "portdata": 'ünï "x" <&>\n',
            },
        }
    ),
]


@pytest.mark.parametrize("iface", SHAPES + corpus_interfaces(), ids=lambda i: i.mac)
def test_split_is_the_interface_without_its_port_data(iface: Interface) -> None:
    text, portdata = split_interface(iface)
    assert text == iface.without_portdata().model_dump_json(exclude_none=True)
    assert portdata == iface.portdata
    assert join_interface(text, portdata) == iface
