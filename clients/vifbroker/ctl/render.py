"""Turning migrations and hosts into rows (table) or documents (JSON). No I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from vifbroker.model import Host, Migration, VifRecord, VifStatus, portdata_digest

Row = dict[str, Any]


def age(seconds: float) -> str:
    """``42s``, ``3m``, ``5h``, ``2d``: how long ago, for a human."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def stamp(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    """Left-aligned columns with upper-case headers (like ``kubectl get``)."""
    cells = [[c.upper() for c in columns]]
    cells += [["-" if r.get(c) is None else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def as_json(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


def json_line(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def vif_counts(m: Migration) -> str:
    done = sum(1 for v in m.interfaces if v.status in (VifStatus.APPLIED, VifStatus.SKIPPED))
    failed = sum(1 for v in m.interfaces if v.status is VifStatus.FAILED)
    text = f"{done}/{len(m.interfaces)}"
    return f"{text} ({failed} failed)" if failed else text


MIGRATION_COLUMNS = ("id", "domain", "source", "destination", "state", "vifs", "updated")


def migration_row(m: Migration) -> Row:
    return {
        "id": m.id,
        "domain": m.domain_name or m.domain_uuid,
        "source": m.source_host,
        "destination": m.destination_host,
        "state": m.state.value,
        "vifs": vif_counts(m),
        "updated": stamp(m.updated_at),
    }


def migration_doc(m: Migration) -> Row:
    return m.model_dump(mode="json")


def digest_check(record: VifRecord | None, generation: int, purged: bool) -> str:
    """Does what the destination read back match what was uploaded?

    ``match`` / ``mismatch`` for a vif applied at its latest generation;
    ``stale`` when the result is for an older generation; ``purged`` when the
    port data is gone (a terminal migration); ``-`` when there is no result yet.
    """
    if record is None or record.result.digest is None:
        return "-"
    if record.result.applied_generation != generation:
        return "stale"
    if purged:
        return "purged"
    port = record.interface.virtualport if record.interface is not None else None
    uploaded = portdata_digest(port.portdata if port is not None else None)
    return "match" if uploaded == record.result.digest else "mismatch"


VIF_COLUMNS = ("mac", "generation", "applied", "status", "digest", "detail")


def vif_rows(m: Migration, records: Sequence[VifRecord] | None) -> list[Row]:
    """Per-vif rows; ``records`` are the domain's records when they belong to ``m``."""
    by_mac = {r.mac: r for r in records or ()}
    return [
        {
            "mac": v.mac,
            "generation": v.generation,
            "applied": v.applied_generation,
            "status": v.status.value,
            "digest": digest_check(by_mac.get(v.mac), v.generation, m.state.terminal),
            "detail": v.detail,
        }
        for v in m.interfaces
    ]


def migration_header(m: Migration) -> str:
    fields = [
        ("id", m.id),
        ("domain", f"{m.domain_uuid}" + (f" ({m.domain_name})" if m.domain_name else "")),
        ("route", f"{m.source_host} -> {m.destination_host}"),
        ("state", m.state.value),
        ("on backend mismatch", m.on_backend_mismatch),
        ("created", stamp(m.created_at)),
        ("updated", stamp(m.updated_at)),
        ("expires", stamp(m.expires_at)),
        ("revision", str(m.revision)),
    ]
    width = max(len(k) for k, _ in fields)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in fields)


def event_line(m: Migration) -> str:
    """One line per change for ``migrations watch``."""
    return (
        f"{m.revision:>8}  {stamp(m.updated_at)}  {m.id}  {m.state.value:<9}  "
        f"vifs {vif_counts(m)}  {m.source_host} -> {m.destination_host}  "
        f"{m.domain_name or m.domain_uuid}"
    )


HOST_COLUMNS = ("name", "last_seen", "age", "agent_version", "backends", "reporting")


def host_row(h: Host, now: datetime, stale_after: float) -> Row:
    seconds = (now - h.last_seen).total_seconds()
    backends = ",".join(b.name + ("" if b.available else "(unavailable)") for b in h.backends)
    return {
        "name": h.name,
        "last_seen": stamp(h.last_seen),
        "age": age(seconds),
        "age_seconds": round(seconds, 3),
        "agent_version": h.agent_version,
        "backends": backends or None,
        "reporting": "yes" if seconds <= stale_after else "NO",
    }


def host_doc(h: Host, now: datetime, stale_after: float) -> Row:
    row = host_row(h, now, stale_after)
    return {
        **h.model_dump(mode="json"),
        "age_seconds": row["age_seconds"],
        "reporting": row["reporting"] == "yes",
    }
