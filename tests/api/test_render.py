"""The inbox is written straight to JSON: the same bytes as the dict rendering."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from vifbroker.model import (
    Inbox,
    InboxItem,
    Interface,
    Migration,
    MigrationState,
    VifRecord,
    VifResult,
    VifStatus,
    VifSummary,
)
from vifbroker.server.render import (
    _dumps,
    inbox_json,
    inbox_json_yielding,
    migration_doc,
    record_doc,
    records_json,
    records_json_yielding,
)


def inbox_doc(inbox: Inbox) -> dict[str, Any]:
    """The inbox rendered through the server's per-document dict renderers."""
    return {
        "revision": inbox.revision,
        "items": [
            {
                "revision": item.revision,
                "direction": item.direction,
                "migration": migration_doc(item.migration),
                "interfaces": [record_doc(r) for r in item.interfaces],
            }
            for item in inbox.items
        ],
    }

HOSTILE = [
    None,
    "pd",
    "q\"uote's\nnew\r\nline -- a=b=c <tag> &amp; é ü 日本 🚀🧪 \t end",
    "ctrl\x01chars\x1f and \ufffe \u2028 \x7f back\\slash /",
]
DOM = "6f1a3c2e-0000-4000-8000-000000000001"
T = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)


def _record(mac: str, portdata: str | None, with_interface: bool = True) -> VifRecord:
    iface = Interface.model_validate(
        {
            "mac": mac,
            "type": "bridge",
            "source": {"bridge": "br-int", "zone": "ü"},
            "target_dev": None,
            "virtualport": {
                "type": "openvswitch",
                "parameters": {"interfaceid": "ïd"},
                "portdata": portdata,
            },
        }
    )
    return VifRecord(
        domain_uuid=DOM,
        mac=mac,
        generation=3,
        interface=iface if with_interface else None,
        result=VifResult(status=VifStatus.FAILED, applied_generation=2, detail=portdata),
        revision=7,
    )


def _inbox(portdata: str | None, name: str | None) -> Inbox:
    m = Migration(
        id="m-1",
        domain_uuid=DOM,
        domain_name=name,
        source_host="a",
        destination_host="b",
        state=MigrationState.UPLOADED,
        on_backend_mismatch="skip",
        created_at=T,
        updated_at=T,
        expires_at=T,
        revision=9,
        interfaces=[
            VifSummary(
                mac="52:54:00:00:00:01",
                generation=3,
                status=VifStatus.PENDING,
                applied_generation=0,
                detail=portdata,
            )
        ],
    )
    recs = [_record("52:54:00:00:00:01", portdata), _record("52:54:00:00:00:02", None, False)]
    items = [
        InboxItem(revision=9, direction="incoming", migration=m, interfaces=recs),
        InboxItem(revision=9, direction="outgoing", migration=m, interfaces=[]),
    ]
    return Inbox(revision=12, items=items)


@pytest.mark.parametrize("portdata", HOSTILE)
@pytest.mark.parametrize("name", [None, 'vm-ünï "quoted"'])
def test_inbox_json_is_the_dict_rendering(portdata: str | None, name: str | None) -> None:
    box = _inbox(portdata, name)
    assert inbox_json(box) == _dumps(inbox_doc(box))
    assert json.loads(inbox_json(box)) == inbox_doc(box)
    records = box.items[0].interfaces
    assert records_json(records) == _dumps({"interfaces": [record_doc(r) for r in records]})


def test_empty_inbox() -> None:
    box = Inbox(revision=5, items=[])
    assert inbox_json(box) == _dumps(inbox_doc(box)) == b'{"revision":5,"items":[]}'


@pytest.mark.parametrize("portdata", HOSTILE)
async def test_the_yielding_renderers_write_the_same_bytes(portdata: str | None) -> None:
    box = _inbox(portdata, "vm")
    first = box.items[0].model_copy(update={"interfaces": box.items[0].interfaces * 20})
    big = box.model_copy(update={"items": [first, *box.items[1:]]})  # past a batch
    for inbox in (box, big):
        assert await inbox_json_yielding(inbox) == inbox_json(inbox)
        records = inbox.items[0].interfaces
        assert await records_json_yielding(records) == records_json(records)
