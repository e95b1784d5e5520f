"""The inbox and its records as JSON text, written without dicts in between.

The broker's stores build an inbox answer from these pieces, and the SQLite
watch cache keeps each piece once rendered: a record or a migration is
rendered once per change, then joined into every answer that hands it out
(an evacuation hands each change to both hosts). The documents, keys and
compact form are those of ``model_dump(mode="json")`` (tests/api/test_render.py).
Pure functions of the models: no I/O (the ``_yielding`` ones only let the
event loop run between batches of records).
"""

from __future__ import annotations

import asyncio
import json
import json.encoder
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .migration import Inbox, InboxItem, Migration, VifRecord

#: A JSON string literal (UTF-8 kept as it is, like pydantic's output):
#: ``json.dumps(value, ensure_ascii=False)`` without building an encoder per call,
#: and the C function itself rather than a wrapper (a handoff's answer calls it
#: ten times).
text = json.encoder.encode_basestring


def record_json(record: VifRecord) -> str:
    """One record; unset optional members of its interface are left out rather than null."""
    iface = record.interface
    return (
        f'{{"domain_uuid":{text(record.domain_uuid)},"mac":{text(record.mac)},'
        f'"generation":{record.generation:d},'
        f'"interface":{iface.model_dump_json(exclude_none=True) if iface else "null"},'
        f'"result":{record.result.model_dump_json()},"revision":{record.revision:d}}}'
    )


def migration_json(migration: Migration) -> str:
    return migration.model_dump_json()


def item_json(revision: int, direction: str, migration: str, records: Iterable[str]) -> str:
    """One inbox item from its migration's and its records' JSON text."""
    return (
        f'{{"revision":{revision:d},"direction":{text(direction)},'
        f'"migration":{migration},"interfaces":[{",".join(records)}]}}'
    )


@dataclass(frozen=True, slots=True)
class InboxPage:
    """An inbox answer in its wire form: the revision and each item's JSON text."""

    revision: int
    items: Sequence[str]

    def json(self) -> bytes:
        return f'{{"revision":{self.revision:d},"items":[{",".join(self.items)}]}}'.encode()


def item_of(item: InboxItem) -> str:
    return item_json(
        item.revision,
        item.direction,
        migration_json(item.migration),
        (record_json(r) for r in item.interfaces),
    )


def page_of(inbox: Inbox) -> InboxPage:
    """``inbox`` in its wire form (what the inbox route answers)."""
    return InboxPage(inbox.revision, [item_of(item) for item in inbox.items])


#: Records rendered between two yields to the event loop (a few milliseconds).
YIELD_EVERY = 16


async def records_yielding(records: Sequence[VifRecord]) -> list[str]:
    """``record_json`` of each record, yielding to the event loop between batches."""
    parts: list[str] = []
    for start in range(0, len(records), YIELD_EVERY):
        await asyncio.sleep(0)
        parts.extend(record_json(r) for r in records[start : start + YIELD_EVERY])
    return parts


async def page_yielding(inbox: Inbox) -> InboxPage:
    """:func:`page_of`, letting the event loop serve other requests between batches
    of records (no thread: no GIL to wait for). For large answers."""
    items = [
        item_json(
            item.revision,
            item.direction,
            migration_json(item.migration),
            await records_yielding(item.interfaces),
        )
        for item in inbox.items
    ]
    return InboxPage(inbox.revision, items)


async def page_of_any(inbox: Inbox) -> InboxPage:
    """:func:`page_of`, or :func:`page_yielding` when it holds more than a batch of records."""
    if sum(len(item.interfaces) for item in inbox.items) > YIELD_EVERY:
        return await page_yielding(inbox)
    return page_of(inbox)
