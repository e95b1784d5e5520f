"""Rows rendered straight to JSON text: the same bytes as through the models."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from test_rows import SHAPES, corpus_interfaces

from vifbroker.model import Interface, MigrationState, VifStatus
from vifbroker.model.wire import migration_json, record_json
from vifbroker.store import rows
from vifbroker.store.rowtext import interface_text, migration_text, record_text

ODD = [
    None,
    "",
    "pd",
    "ovn:" + "x" * 300,
    'ünï "x" <&>\n',
    "q\"uote's\nnew\r\nline -- a=b=c <tag> &amp; é ü 日本 🚀🧪 \t end",
    "ctrl\x01chars\x1f and \x00 \x08 \x0c \ufffe \u2028 \x7f back\\slash /",
    '}"virtualport":{"parameters":{}}',
]
DOM = "6f1a3c2e-0000-4000-8000-000000000001"
T = 1_795_000_000_123_456  # microseconds


def _odd_interfaces() -> list[Interface]:
    return [
        Interface.model_validate(
            {
                "mac": "52:54:00:00:01:01",
                "type": 'e"th}',
                "source": {
                    "bridge": 'br-"virtualport":{',
                    "address": {"virtualport": '"virtualport":{"x":"}"}'},
                },
                "target_dev": "tap\\0",
                "model": "virtio ü",
                "virtualport": {
                    "parameters": {"virtualport": '}{"', "vlan": ',"mtu":1'},
                    "portdata": "pd",
                },
                "vlan": {"trunk": True, "tags": [{"id": 5, "native_mode": "untagged"}]},
                "mtu": 9000,
                "link_state": "down",
                "bandwidth": {"inbound": {"average": 1, "peak": 2}, "outbound": {"floor": 3}},
            }
        ),
        Interface.model_validate(
            {"mac": "52:54:00:00:01:02", "source": {"address": '"virtualport":{'}}
        ),
    ]


INTERFACES = SHAPES + corpus_interfaces() + _odd_interfaces()


def _vif(iface: Interface, portdata: str | None, **kw: Any) -> dict[str, Any]:
    iface_json, _ = rows.split_interface(iface)
    return {
        "migration_id": "m-1",
        "mac": iface.mac,
        "position": 0,
        "generation": 3,
        "interface": iface_json,
        "portdata": portdata,
        "status": VifStatus.PENDING.value,
        "applied_generation": 0,
        "detail": None,
        "digest": None,
        "revision": 7,
        "uploaded_at": T,
        "applied_at": None,
    } | kw


@pytest.mark.parametrize("iface", INTERFACES, ids=lambda i: i.mac)
def test_interface_text_is_the_joined_interface_dumped(iface: Interface) -> None:
    stored, portdata = rows.split_interface(iface)
    for pd in {portdata, *ODD}:
        if pd is not None and iface.virtualport is None:
            continue  # a row never holds port data without a virtualport
        joined = rows.join_interface(stored, pd).model_dump_json(exclude_none=True)
        assert interface_text(stored, pd) == joined
        json.loads(joined)


STATUSES = list(VifStatus)


@pytest.mark.parametrize("iface", INTERFACES, ids=lambda i: i.mac)
def test_record_text_is_record_json(iface: Interface) -> None:
    for status, detail, digest in itertools.product(STATUSES, ODD[:3] + ODD[5:], [None, "ab" * 32]):
        vif = _vif(iface, iface.portdata, status=status.value, detail=detail, digest=digest)
        assert record_text(vif, DOM) == record_json(rows.record(vif, DOM))


def _migration(**kw: Any) -> dict[str, Any]:
    return {
        "id": "m-1",
        "domain_uuid": DOM,
        "domain_name": None,
        "source_host": "a",
        "destination_host": "b",
        "state": MigrationState.UPLOADED.value,
        "on_backend_mismatch": "skip",
        "ttl_seconds": 3600,
        "created_at": T,
        "updated_at": T + 1,
        "expires_at": T + 3_600_000_000,
        "revision": 9,
        "vif_count": 0,
        "vifs_done": 0,
        "vifs_failed": 0,
        "resumed_at": None,
        "registered_by": None,
    } | kw


def _vif_sets() -> list[list[dict[str, Any]]]:
    iface = SHAPES[3]
    sets: list[list[dict[str, Any]]] = [[]]
    for status, applied_at, detail in itertools.product(
        STATUSES, [None, 0, T - 5, T + 2_000_000], ODD
    ):
        one = _vif(
            iface, "pd", status=status.value, applied_at=applied_at, detail=detail,
            applied_generation=3 if status is VifStatus.APPLIED else 2,
        )
        sets.append([one])
        other = _vif(
            SHAPES[0], None, mac="52:54:00:00:00:09", status=VifStatus.APPLIED.value,
            applied_generation=3, applied_at=T + 1_000_000, uploaded_at=None,
        )
        sets.append([one, other])
    return sets


@pytest.mark.parametrize("state", list(MigrationState))
@pytest.mark.parametrize("resumed_at", [None, T + 1_500_000, T - 1])
def test_migration_text_is_migration_json(state: MigrationState, resumed_at: int | None) -> None:
    for vifs, (name, by, when) in itertools.product(
        _vif_sets(),
        [(None, None, T), ('vm "ünï"\n', "host-a", 0), ("x\x01", None, 1_000_000)],
    ):
        row = _migration(
            state=state.value, resumed_at=resumed_at, domain_name=name, registered_by=by,
            created_at=when, updated_at=when + 120_000,
        )
        assert migration_text(row, vifs) == migration_json(rows.migration(row, vifs))
