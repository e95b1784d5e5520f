"""Preflight: whether a host can honour each vif, from what its agent last reported.

Pure: the caller passes the host as stored (or None), the time and the
heartbeat interval; nothing here reads a clock or a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .interface import Interface
from .migration import BackendInfo, Host, OnMismatch

Verdict = Literal["ok", "skip", "fail"]

#: a host that has not reported for this many heartbeat intervals is not reporting
MISSED_HEARTBEATS = 3


class PreflightVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mac: str
    verdict: Verdict
    #: the backend that would apply the vif (None: none would)
    backend: str | None = None
    reason: str | None = None


class Preflight(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    reporting: bool
    last_seen: datetime | None = None
    verdicts: list[PreflightVerdict]


def handles(backend: BackendInfo, interface: Interface) -> bool:
    """The rule :class:`BackendInfo` documents (the agent's backends decide the same way)."""
    vp = interface.virtualport_type
    return (
        "*" in backend.virtualport_types
        or "*" in backend.interface_types
        or (vp is not None and vp in backend.virtualport_types)
        or interface.type in backend.interface_types
    )


def describe(interface: Interface) -> str:
    vp = interface.virtualport_type
    return f"type={interface.type}" + (f" virtualport={vp}" if vp else "")


def preflight(
    host_name: str,
    host: Host | None,
    interfaces: Sequence[Interface],
    *,
    now: datetime,
    heartbeat_interval: float,
    on_backend_mismatch: OnMismatch = "skip",
) -> Preflight:
    """Per vif: ``ok``, ``skip`` (no backend for it, under ``skip``) or ``fail``, with why."""
    window = timedelta(seconds=MISSED_HEARTBEATS * heartbeat_interval)
    if host is None:
        silent: str | None = f"host {host_name} has never reported"
    elif now - host.last_seen > window:
        age = (now - host.last_seen).total_seconds()
        silent = (
            f"host {host_name} has not reported for {age:.0f} s "
            f"(more than {MISSED_HEARTBEATS} heartbeat intervals of {heartbeat_interval:g} s)"
        )
    else:
        silent = None
    if silent is not None:
        verdicts = [PreflightVerdict(mac=i.mac, verdict="fail", reason=silent) for i in interfaces]
    else:
        assert host is not None
        verdicts = [_verdict(host, i, on_backend_mismatch) for i in interfaces]
    return Preflight(
        host=host_name,
        reporting=silent is None,
        last_seen=host.last_seen if host is not None else None,
        verdicts=verdicts,
    )


def _verdict(host: Host, interface: Interface, policy: OnMismatch) -> PreflightVerdict:
    mac = interface.mac
    owners = [b for b in host.backends if handles(b, interface)]
    if not owners:
        names = ", ".join(b.name for b in host.backends) or "none"
        reason = f"no backend on {host.name} handles {describe(interface)} (backends: {names})"
        return PreflightVerdict(mac=mac, verdict="skip" if policy == "skip" else "fail",
                                reason=reason)  # fmt: skip
    backend = owners[0]  # the agent's order is its preference
    if not backend.available:
        why = f": {backend.detail}" if backend.detail else ""
        reason = f"{backend.name} on {host.name} is not reachable{why}"
        return PreflightVerdict(mac=mac, verdict="fail", backend=backend.name, reason=reason)
    bridge = interface.source.attributes().get("bridge") if interface.source else None
    if bridge is not None and backend.bridges is not None and bridge not in backend.bridges:
        have = ", ".join(backend.bridges) or "none"
        reason = f"bridge {bridge} does not exist on {host.name} (bridges: {have})"
        return PreflightVerdict(mac=mac, verdict="fail", backend=backend.name, reason=reason)
    size = len(interface.portdata.encode("utf-8")) if interface.portdata is not None else 0
    if backend.max_portdata is not None and size > backend.max_portdata:
        reason = (
            f"port data is {size} bytes, above {backend.name}'s limit on {host.name} "
            f"of {backend.max_portdata}"
        )
        return PreflightVerdict(mac=mac, verdict="fail", backend=backend.name, reason=reason)
    return PreflightVerdict(mac=mac, verdict="ok", backend=backend.name)
