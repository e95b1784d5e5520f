"""Domain XML and lifecycle events through libvirt-python, read-only.

Optional: ``pip install vifbroker[libvirt]``. Without the binding, the agent
falls back to ``virsh -r`` (:class:`.domainxml.VirshSource` and
:class:`.lifecycle.VirshEvents`).

libvirt's event loop is per process, not per connection or asyncio loop: the
first user registers libvirt's default implementation and runs it in one
daemon thread; each callback hands its event to the asyncio loop that asked
for it (``call_soon_threadsafe``). The thread is the one process-wide object
here because libvirt itself allows only one event implementation per process.
Blocking libvirt calls (lookup, XML) run in worker threads with a timeout, so
a hung libvirtd stalls one call, never the agent's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import libvirt
from vifbroker.model import Interface, normalize_uuid

from .domainxml import parse_domain_xml
from .errors import DomainNotFound, DomainXmlError
from .lifecycle import DomainEvent, FeedBroken, event_from_codes

log = logging.getLogger(__name__)
T = TypeVar("T")

_event_lock = threading.Lock()
_event_thread: threading.Thread | None = None


def _ignore_error(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr unless a handler takes it; we raise instead."""


def _run_events() -> None:
    while True:
        if libvirt.virEventRunDefaultImpl() < 0:
            log.error("libvirt event loop iteration failed")


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it (once per process).

    Must happen before the connections that want events are opened.
    """
    global _event_thread
    with _event_lock:
        if _event_thread is not None:
            return
        libvirt.registerErrorHandler(_ignore_error, None)
        libvirt.virEventRegisterDefaultImpl()
        _event_thread = threading.Thread(target=_run_events, name="libvirt-events", daemon=True)
        _event_thread.start()


class LibvirtSource:
    """A libvirt connection's domains: ``interfaces()`` and lifecycle ``events()``."""

    def __init__(self, uri: str | None = None, *, timeout: float = 10.0) -> None:
        self.uri = uri
        self.timeout = timeout
        self._conn: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LibvirtSource({self.uri!r})"

    # -- domain XML --------------------------------------------------------------------

    async def interfaces(self, domain_uuid: str) -> list[Interface]:
        uuid = normalize_uuid(domain_uuid)
        try:
            xml = await asyncio.wait_for(asyncio.to_thread(self._xml, uuid), self.timeout)
        except TimeoutError as exc:
            msg = f"libvirt {self.uri}: no domain XML within {self.timeout}s"
            raise DomainXmlError(msg) from exc
        return parse_domain_xml(xml.encode(), f"libvirt {self.uri} domain {uuid}")

    def _connection(self) -> Any:
        with self._lock:
            if self._conn is not None and self._conn.isAlive() != 1:
                self._close_quietly(self._conn)
                self._conn = None
            if self._conn is None:
                ensure_event_loop()
                self._conn = libvirt.openReadOnly(self.uri)
            return self._conn

    def _xml(self, uuid: str) -> str:
        try:
            return str(self._connection().lookupByUUIDString(uuid).XMLDesc(0))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise DomainNotFound(f"libvirt {self.uri}: no domain {uuid}") from exc
            raise DomainXmlError(f"libvirt {self.uri}: {exc}") from exc

    async def running(self) -> list[str]:
        return await self._call(self._running)

    def _running(self) -> list[str]:
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
        return sorted(
            normalize_uuid(d.UUIDString()) for d in self._connection().listAllDomains(flags)
        )

    async def migrating_out(self, domain_uuid: str) -> bool:
        return await self._call(self._migrating_out, normalize_uuid(domain_uuid))

    def _migrating_out(self, uuid: str) -> bool:
        try:
            stats = self._connection().lookupByUUIDString(uuid).jobStats()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise DomainXmlError(f"libvirt {self.uri}: {exc}") from exc
        active = stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) in (
            libvirt.VIR_DOMAIN_JOB_BOUNDED, libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
        )  # fmt: skip
        return bool(
            active and stats.get("operation") == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
        )

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking libvirt call in a worker thread, bounded by ``timeout``."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), self.timeout)
        except TimeoutError as exc:
            raise DomainXmlError(f"libvirt {self.uri}: no answer within {self.timeout}s") from exc
        except libvirt.libvirtError as exc:
            raise DomainXmlError(f"libvirt {self.uri}: {exc}") from exc

    @staticmethod
    def _close_quietly(conn: Any) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()

    async def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(self._close_quietly, conn)

    # -- lifecycle events --------------------------------------------------------------

    async def events(self) -> AsyncIterator[DomainEvent]:
        """Every lifecycle event of this libvirt's domains; raises FeedBroken when the
        connection closes (libvirtd restarted): the caller subscribes again."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[DomainEvent | None] = asyncio.Queue()

        def lifecycle(_conn: Any, dom: Any, event: int, detail: int, _opaque: object) -> None:
            try:
                ev = event_from_codes(dom.UUIDString(), event, detail)
            except ValueError:
                return
            loop.call_soon_threadsafe(queue.put_nowait, ev)

        def closed(_conn: Any, reason: int, _opaque: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, None)

        conn, callback_id = await asyncio.wait_for(
            asyncio.to_thread(self._subscribe, lifecycle, closed), self.timeout
        )
        log.info("libvirt %s: following domain lifecycle events", self.uri or "(default)")
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            await asyncio.to_thread(self._unsubscribe, conn, callback_id)
        raise FeedBroken(f"libvirt {self.uri}: connection closed")

    def _subscribe(self, lifecycle: Any, closed: Any) -> tuple[Any, int]:
        ensure_event_loop()
        try:
            conn = libvirt.openReadOnly(self.uri)
            conn.registerCloseCallback(closed, None)
            callback_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None
            )
        except libvirt.libvirtError as exc:
            raise FeedBroken(f"libvirt {self.uri}: {exc}") from exc
        return conn, int(callback_id)

    def _unsubscribe(self, conn: Any, callback_id: int) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.domainEventDeregisterAny(callback_id)
            conn.unregisterCloseCallback()
        self._close_quietly(conn)
