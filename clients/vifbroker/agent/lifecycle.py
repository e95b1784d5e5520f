"""Domain lifecycle events (started, resumed, …) of the local libvirt, as a stream.

A seam with two implementations: libvirt-python's event callbacks
(:mod:`.libvirtapi`, preferred) and, without the binding, a read-only
``virsh event --loop`` child (:class:`VirshEvents`). The agent uses them to act
when something happens to a domain rather than polling: a destination domain
that appears (its NICs can be judged at once) or resumes (the port data is
checked once more after libvirt's own carry has written its value).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from vifbroker.model import normalize_uuid

from .errors import DomainXmlError
from .virsh import run_virsh, virsh_argv

log = logging.getLogger(__name__)

#: libvirt's virDomainEventType, in order (index = the C enum value)
EVENT_NAMES = (
    "defined", "undefined", "started", "suspended", "resumed",
    "stopped", "shutdown", "pmsuspended", "crashed",
)  # fmt: skip

#: the detail enum of each event type (index = the C enum value)
DETAIL_NAMES: dict[str, tuple[str, ...]] = {
    "defined": ("added", "updated", "renamed", "from snapshot"),
    "undefined": ("removed", "renamed"),
    "started": ("booted", "migrated", "restored", "from snapshot", "wakeup", "recreated"),
    "suspended": (
        "paused", "migrated", "ioerror", "watchdog", "restored", "from snapshot",
        "api error", "postcopy", "postcopy failed",
    ),
    "resumed": ("unpaused", "migrated", "from snapshot", "postcopy", "postcopy failed"),
    "stopped": (
        "shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from snapshot",
    ),
}  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class DomainEvent:
    domain_uuid: str
    #: lower-case libvirt event name: "started", "resumed", "stopped", …
    event: str
    #: lower-case detail: "migrated", "unpaused", "booted", …
    detail: str
    #: when this process received it (libvirt events carry no time of their own)
    at: datetime = field(default_factory=_now)

    @property
    def resumed(self) -> bool:
        """The guest runs again (on a destination: the switchover is over)."""
        return self.event == "resumed"

    @property
    def arriving(self) -> bool:
        """An incoming migration started this domain here (paused until it resumes)."""
        return self.event == "started" and self.detail == "migrated"

    @property
    def gone(self) -> bool:
        """The domain stopped or vanished here (an incoming one failed or was destroyed)."""
        return self.event in ("stopped", "undefined", "crashed")


def event_from_codes(domain_uuid: str, event: int, detail: int) -> DomainEvent:
    name = EVENT_NAMES[event] if 0 <= event < len(EVENT_NAMES) else f"event-{event}"
    details = DETAIL_NAMES.get(name, ())
    detail_name = details[detail] if 0 <= detail < len(details) else f"detail-{detail}"
    return DomainEvent(normalize_uuid(domain_uuid), name, detail_name)


class DomainFeed(Protocol):
    def events(self) -> AsyncIterator[DomainEvent]:
        """Lifecycle events of this host's domains until the feed breaks (then: raise)."""


class FeedBroken(DomainXmlError):
    """The event stream ended: libvirtd went away or the child exited."""


_VIRSH_EVENT = re.compile(
    r"^event 'lifecycle' for domain '?(?P<name>.*?)'?: (?P<event>\S+) (?P<detail>.*)$"
)


def parse_virsh_event(line: str) -> tuple[str, str, str] | None:
    """``event 'lifecycle' for domain 'vm1': Resumed Migrated`` → (name, event, detail)."""
    m = _VIRSH_EVENT.match(line.strip())
    if m is None:
        return None
    return m["name"], m["event"].lower(), m["detail"].strip().lower()


class VirshEvents:
    """``virsh -r [-c URI] event --loop --event lifecycle``; names resolved to UUIDs.

    virsh names a domain, not its UUID, so each event costs one ``virsh -r
    domuuid``; an event of a domain that is already gone again is dropped (the
    agent only needs the events of domains that stay: started, resumed).
    """

    def __init__(
        self, *, virsh: str = "virsh", uri: str | None = None, timeout: float = 10.0
    ) -> None:
        self.virsh = virsh
        self.uri = uri
        self.timeout = timeout

    async def events(self) -> AsyncIterator[DomainEvent]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *virsh_argv(self.virsh, self.uri, "event", "--loop", "--event", "lifecycle"),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            raise FeedBroken(f"cannot run {self.virsh}: {exc}") from exc
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                parsed = parse_virsh_event(line.decode("utf-8", "replace"))
                if parsed is None:
                    continue
                name, event, detail = parsed
                domain_uuid = await self._uuid(name)
                if domain_uuid is not None:
                    yield DomainEvent(domain_uuid, event, detail)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        raise FeedBroken(f"virsh event exited {proc.returncode}")

    async def _uuid(self, name: str) -> str | None:
        try:
            rc, out, _ = await run_virsh(
                self.virsh, self.uri, "domuuid", name, seconds=self.timeout
            )
        except (OSError, TimeoutError):
            return None
        try:
            return normalize_uuid(out.decode().strip()) if rc == 0 else None
        except ValueError:
            return None
