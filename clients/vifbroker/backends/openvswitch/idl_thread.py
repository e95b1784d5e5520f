"""The thread that owns the native driver's OVSDB connection.

The ``ovs`` package's IDL is synchronous: it keeps a replica of the monitored
columns, reconnects by itself and resumes monitoring, and is driven by
``run()`` plus a poll on its socket. It runs here, in one thread of its own,
so the event loop never waits on it. The loop talks to the thread in two
directions only:

* jobs in: a transaction to commit (:class:`WriteJob`) or a barrier
  (:class:`SyncJob`), put in a queue, with a byte on a pipe to wake the poll;
* facts out, through callbacks the thread calls (the native driver turns them
  into ``loop.call_soon_threadsafe``): rows that changed, whether the replica
  is live, and each job's outcome. They leave in the order they happened, so
  by the time a job's outcome reaches the loop, every row change the IDL saw
  before it has too.

ovsdb-server flushes pending monitor updates to a client before it sends
any reply to that client, so after a committed write the replica already
holds the rows as written, and after a barrier (an empty read transaction)
the replica holds everything committed before the barrier was sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import ovs.db.idl
import ovs.poller

from ..base import BackendUnavailable
from .driver import OvsdbError, StalePort, Write
from .ovsjson import install as install_fast_parser
from .rows import PortRow
from .transact import guard_op, mutate_op

log = logging.getLogger(__name__)

Txn: Any = ovs.db.idl.Transaction

#: The part of the Open_vSwitch schema this driver reads and writes, compiled
#: in like the C IDL does (so no schema download, which could block, first).
SCHEMA: dict[str, Any] = {
    "name": "Open_vSwitch",
    "version": "8.0.0",
    "tables": {
        "Interface": {
            "columns": {
                "name": {"type": "string", "mutable": False},
                "external_ids": {
                    "type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}
                },
            },
        },
        "Bridge": {"columns": {"name": {"type": "string", "mutable": False}}},
    },
}
_NO_ROW = ["_uuid", "==", ["uuid", "00000000-0000-0000-0000-000000000000"]]
_DONE = (Txn.SUCCESS, Txn.UNCHANGED)

Rows = dict[str, PortRow | None]


class Job:
    """Work for the IDL thread; ``done`` is called (in the thread) with None or an error."""

    def __init__(self, done: Callable[[BaseException | None], None]) -> None:
        self.done = done
        #: set by the loop when the caller gave up: the thread drops the job
        self.cancelled = False
        self.txn: Any = None

    def begin(self, idl: Any) -> None:
        raise NotImplementedError


class SyncJob(Job):
    """A barrier: done once the replica holds everything committed before it."""

    def begin(self, idl: Any) -> None:
        self.txn = Txn(idl)
        self.txn.add_op({"op": "select", "table": "Interface", "where": [_NO_ROW]})


class WriteJob(Job):
    def __init__(self, writes: Sequence[Write], done: Callable[[BaseException | None], None]):
        super().__init__(done)
        self.writes = list(writes)
        self.tries = 0

    def begin(self, idl: Any) -> None:
        self.tries += 1
        rows = idl.tables["Interface"].rows
        for write in self.writes:
            row = rows.get(uuid.UUID(write.uuid))
            if row is None:
                raise StalePort(f"no Interface row {write.uuid}")
            # Only when trying again: the first time the server's guards check the
            # tags (reading them here costs the IDL a conversion of every row's map).
            if write.tag is not None and self.tries > 1:
                ids = row.external_ids
                if (ids.get("vm-id"), ids.get("attached-mac")) != write.tag:
                    raise StalePort(f"Interface row {write.uuid} was re-plugged")
        txn = Txn(idl)
        # Raw operations rather than Row.setkey(): the same transaction on the
        # wire, without the IDL converting and checking every value in Python
        # first (a third of this thread's time for a 64-vif apply). A failed
        # guard is the IDL's "try again" (its own checks are waits too): by the
        # next begin() the replica holds the row as it is, and the check above
        # turns a re-plugged row into StalePort.
        for write in self.writes:
            txn.add_op(guard_op(write))
        for write in self.writes:
            txn.add_op(mutate_op(write))
        self.txn = txn


class _Idl(ovs.db.idl.Idl):  # type: ignore[misc]  # ovs ships no type hints
    """An IDL that remembers which rows changed since it was last asked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.touched: set[uuid.UUID] = set()
        self.bridges_changed = False

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        if row._table.name == "Interface":
            self.touched.add(row.uuid)
        else:
            self.bridges_changed = True

    @property
    def live(self) -> bool:
        # _session is the IDL's own connection; it has no public accessor.
        return bool(self.state == self.IDL_S_MONITORING and self._session.is_connected())


class IdlThread:
    def __init__(
        self,
        remote: str,
        *,
        on_rows: Callable[[Rows, bool], None],
        on_live: Callable[[bool], None],
        on_bridges: Callable[[list[str]], None],
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self.remote = remote
        self.on_rows = on_rows
        self.on_live = on_live
        self.on_bridges = on_bridges
        self.backoff = (max(1, int(backoff_min * 1000)), max(1, int(backoff_max * 1000)))
        self._inbox: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._jobs: list[Job] = []
        self._stopping = False
        #: whether the socket to ovsdb-server is up (replica live or not); read by the loop
        self.socket_connected = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._main, name="ovsdb-idl", daemon=True)

    def start(self) -> None:
        install_fast_parser()
        self._thread.start()

    def submit(self, job: Job) -> None:
        if self._stopping:
            job.done(BackendUnavailable("openvswitch backend closed"))
            return
        self._inbox.put(job)
        self._wake()

    def stop(self) -> None:
        self._stopping = True
        self._wake()

    def join(self) -> None:
        self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread ----------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _main(self) -> None:
        helper = ovs.db.idl.SchemaHelper(schema_json=SCHEMA)
        helper.register_columns("Interface", ["name", "external_ids"])
        helper.register_columns("Bridge", ["name"])
        idl = _Idl(self.remote, helper)
        # The IDL's reconnect backoff (1-8 s by default) is longer than an
        # apply may wait for a restarted ovsdb-server.
        idl._session.reconnect.set_backoff(*self.backoff)
        live = False
        try:
            while not self._stopping:
                self._take_jobs()
                idl.run()
                self.socket_connected = bool(idl._session.is_connected())
                live = self._publish(idl, live)
                self._step_jobs(idl, live)
                self._block(idl)
        except Exception:
            log.exception("OVSDB connection thread failed")
            raise
        finally:
            idl.close()
            if live:
                self.on_live(False)
            error = BackendUnavailable("openvswitch backend closed")
            self._take_jobs()
            for job in self._jobs:
                job.done(error)
            self._jobs.clear()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _take_jobs(self) -> None:
        while True:
            try:
                self._jobs.append(self._inbox.get_nowait())
            except queue.Empty:
                return

    def _publish(self, idl: _Idl, was_live: bool) -> bool:
        """Tell the loop what changed in the replica; return whether it is live now."""
        live = idl.live
        table = idl.tables["Interface"].rows
        if live and (idl.bridges_changed or not was_live):
            idl.bridges_changed = False
            self.on_bridges(sorted(str(r.name) for r in idl.tables["Bridge"].rows.values()))
        if live and not was_live:
            # (Re)connected: a whole new snapshot. The loop diffs it against
            # what it had, so consumers hear only what changed meanwhile.
            idl.touched.clear()
            self.on_rows({str(u): _port_row(r) for u, r in table.items()}, True)
            self.on_live(True)
        elif live and idl.touched:
            touched, idl.touched = idl.touched, set()
            rows: Rows = {}
            for u in touched:
                row = table.get(u)
                rows[str(u)] = _port_row(row) if row is not None else None
            self.on_rows(rows, False)
        elif was_live and not live:
            log.info("OVSDB connection to %s lost; reconnecting", self.remote)
            self.on_live(False)
        return live

    def _step_jobs(self, idl: _Idl, live: bool) -> None:
        pending: list[Job] = []
        syncs: list[Job] = []
        for job in self._jobs:
            if job.cancelled:
                continue
            if job.txn is None and isinstance(job, SyncJob) and live:
                syncs.append(job)  # every waiting barrier shares one transaction
                continue
            if job.txn is None:
                if not live:
                    pending.append(job)
                    continue
                try:
                    job.begin(idl)
                except StalePort as exc:
                    job.done(exc)
                    continue
            if self._settle(job, job.txn.commit()):
                pending.append(job)
        if syncs:
            lead = syncs[0]
            lead.begin(idl)
            status = lead.txn.commit()
            for job in syncs:
                job.txn = lead.txn
                if self._settle(job, status):
                    pending.append(job)
        self._jobs = pending

    def _settle(self, job: Job, status: str) -> bool:
        """Finish ``job`` if its transaction did; True while it is still under way."""
        if status in (Txn.INCOMPLETE, Txn.UNCOMMITTED):
            return True
        if status in _DONE:
            job.done(None)
            return False
        if status == Txn.TRY_AGAIN:
            job.txn = None  # the connection dropped: commit again once it is back
            return True
        job.done(OvsdbError(f"OVSDB transaction {status}: {job.txn.get_error() or status}"))
        return False

    def _block(self, idl: _Idl) -> None:
        poller = ovs.poller.Poller()
        idl.wait(poller)
        poller.fd_wait(self._wake_r, ovs.poller.POLLIN)
        poller.timer_wait(1000)  # a backstop only: every event has an fd or a timer
        if not self._inbox.empty():
            poller.immediate_wake()
        poller.block()
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass


def _port_row(row: Any) -> PortRow:
    # Read the replica's data directly: Row attribute access converts and
    # re-checks every value at each read, which was the bulk of this thread's
    # time. This driver never stages changes on Row objects (its writes are
    # raw operations), so the data is exactly what the server sent.
    data = row._data
    ids = {str(k.value): str(v.value) for k, v in data["external_ids"].values.items()}
    return PortRow(str(data["name"].as_scalar()), ids)
