"""The ``native`` driver: one persistent OVSDB connection instead of processes.

The connection (the ``ovs`` package's IDL, as Neutron and os-vif use it)
lives in its own thread (idl_thread.py). On the event loop this driver keeps
what the thread reports: a view of every Interface row (name, external_ids)
and an index of libvirt-tagged ports by domain. So

* a lookup is a barrier round trip (~0.3 ms; concurrent ones share one) and a
  dict read, instead of an ovs-vsctl process scanning every row;
* a write is one transaction of ``mutate``s on external_ids (only the
  PortData key changes, whatever else writes other keys), and the read-back
  is the view once the transaction committed;
* watching is the same view's changes, with no ``ovsdb-client`` process.

After an ovsdb-server restart the IDL reconnects on its own (attempts 1 s
apart at first, the ``ovs`` package's floor, up to ``backoff_max``); its
fresh snapshot is diffed against the view, so watchers hear only what
changed meanwhile. Calls made while the connection is down
wait for it up to ``timeout`` and then raise BackendUnavailable; a
transaction sent but not answered within ``timeout`` raises BackendTimeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from ..base import BackendTimeout, BackendUnavailable, PortEvent
from .driver import OvsDriver, StalePort, Write
from .idl_thread import IdlThread, Job, Rows, SyncJob, WriteJob
from .rows import Port, PortRow, by_mac, port_events

#: ovs-vsctl's default on Debian and most distributions.
DEFAULT_DB = "unix:/var/run/openvswitch/db.sock"


class NativeDriver(OvsDriver):
    def __init__(
        self, *, db: str | None = None, timeout: float = 5.0, backoff_max: float = 2.0
    ) -> None:
        self.remote = db or DEFAULT_DB
        self.timeout = timeout
        self.backoff_max = backoff_max
        #: transactions committed so far (for tests and benchmarks, not for logic)
        self.transactions = 0
        self._view: dict[str, PortRow] = {}
        self._domains: dict[str, dict[str, Port]] = {}  # domain -> row uuid -> port
        self._bridges: list[str] = []
        self._watchers: set[asyncio.Queue[PortEvent | None]] = set()
        self._live = asyncio.Event()
        self._thread: IdlThread | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._live.is_set()

    @property
    def running(self) -> bool:
        """Whether the connection's thread is still there."""
        return self._thread is not None and self._thread.alive

    # -- the seam ------------------------------------------------------------------
    async def ping(self) -> None:
        await self._run(SyncJob)

    async def bridges(self) -> list[str] | None:
        await self._run(SyncJob)
        return list(self._bridges)

    async def ports(self, domain: str) -> dict[str, Port]:
        await self._run(SyncJob)
        return by_mac(list(self._domains.get(domain, {}).values()))

    async def write(self, writes: Sequence[Write]) -> dict[str, Port]:
        await self._run(lambda done: WriteJob(writes, done))
        self.transactions += 1
        read: dict[str, Port] = {}
        for write in writes:
            row = self._view.get(write.uuid)
            if row is None:
                # Deleted after the lookup: the mutate matched no row.
                raise StalePort(f"Interface row {write.uuid} is gone")
            port = row.tagged(write.uuid)
            if port is not None:
                read[write.uuid] = port
        return read

    async def watch(self) -> AsyncIterator[PortEvent]:
        if self._closed:
            return
        self._ensure_thread()
        events: asyncio.Queue[PortEvent | None] = asyncio.Queue()
        for row in self._view.values():
            for initial in port_events(None, row):
                events.put_nowait(initial)
        self._watchers.add(events)
        try:
            while (event := await events.get()) is not None:
                yield event
        finally:
            self._watchers.discard(events)

    async def close(self) -> None:
        self._closed = True
        for watcher in self._watchers:
            watcher.put_nowait(None)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop()
            await asyncio.to_thread(thread.join)
        self._live.clear()

    # -- internals -----------------------------------------------------------------
    def _ensure_thread(self) -> IdlThread:
        if self._closed:
            raise BackendUnavailable("openvswitch backend is closed")
        if self._thread is None:
            # Started lazily so that the callbacks bind to the loop that uses it.
            loop = asyncio.get_running_loop()

            def on_rows(rows: Rows, resync: bool) -> None:
                _call_soon(loop, self._apply_rows, rows, resync)

            def on_live(live: bool) -> None:
                _call_soon(loop, self._set_live, live)

            def on_bridges(names: list[str]) -> None:
                _call_soon(loop, setattr, self, "_bridges", names)

            self._thread = IdlThread(
                self.remote,
                on_rows=on_rows,
                on_live=on_live,
                on_bridges=on_bridges,
                backoff_max=self.backoff_max,
            )
            self._thread.start()
        return self._thread

    async def _run(self, make: Callable[[Callable[[BaseException | None], None]], Job]) -> None:
        thread = self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def done(error: BaseException | None) -> None:
            _call_soon(loop, _settle, future, error)

        job = make(done)
        thread.submit(job)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError as exc:
            job.cancelled = True
            future.cancel()
            if self._closed:
                raise BackendUnavailable("openvswitch backend closed") from exc
            if not thread.socket_connected:
                raise BackendUnavailable(f"ovsdb-server {self.remote} unreachable") from exc
            # Connected, but no answer: a hung (or swamped) server.
            raise BackendTimeout(f"ovsdb-server did not answer within {self.timeout}s") from exc
        except asyncio.CancelledError:
            job.cancelled = True
            future.cancel()
            raise

    def _set_live(self, live: bool) -> None:
        if live:
            self._live.set()
        else:
            self._live.clear()

    def _apply_rows(self, rows: Rows, resync: bool) -> None:
        if resync:
            rows = {**dict.fromkeys(self._view.keys() - rows.keys()), **rows}
        events: list[PortEvent] = []
        for uuid, new in rows.items():
            old = self._view.get(uuid)
            if old is None and new is None:
                continue
            if new is None:
                del self._view[uuid]
            else:
                self._view[uuid] = new
            self._index(uuid, old, new)
            events += port_events(old, new)
        for watcher in self._watchers:
            for event in events:
                watcher.put_nowait(event)

    def _index(self, uuid: str, old: PortRow | None, new: PortRow | None) -> None:
        before = old.tagged(uuid) if old else None
        after = new.tagged(uuid) if new else None
        if before is not None:
            ports = self._domains.get(before.domain, {})
            ports.pop(uuid, None)
            if not ports:
                self._domains.pop(before.domain, None)
        if after is not None:
            self._domains.setdefault(after.domain, {})[uuid] = after


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _call_soon(
    loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object
) -> None:
    # The loop may already be closed when the thread reports its last facts.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)
