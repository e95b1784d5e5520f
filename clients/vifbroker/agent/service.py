"""The host agent: heartbeats, the inbox long-poll, one worker per migration."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence

from vifbroker.backends import Backend
from vifbroker.client import BrokerClient, ClientError
from vifbroker.model import InboxItem

from .domainxml import DomainSource
from .heartbeat import Heartbeat
from .incoming import Incoming
from .lifecycle import DomainEvent, DomainFeed
from .metrics import AgentMetrics
from .outgoing import Outgoing
from .portwatch import PortWatch
from .registrar import Registrar
from .retry import Backoff
from .router import Router
from .settings import AgentSettings, Deps
from .state import StateFile
from .worker import Worker

log = logging.getLogger(__name__)

_Key = tuple[str, str]  # (migration id, direction)


class Agent:
    def __init__(
        self,
        client: BrokerClient,
        backends: Sequence[Backend],
        domains: DomainSource,
        state: StateFile,
        settings: AgentSettings,
        feed: DomainFeed | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.backends = list(backends)
        self.state = state
        self.settings = settings
        # Port changes and (with a feed) the local libvirt's lifecycle events.
        self.watch = PortWatch(self.backends, feed)
        self.metrics = metrics or AgentMetrics()
        self.deps = Deps(client, Router(self.backends), self.watch, domains, settings, self.metrics)
        self.after = 0
        self._workers: dict[_Key, Worker] = {}
        self._tasks: dict[_Key, asyncio.Task[None]] = {}
        self._crashes: dict[_Key, int] = {}
        self._stop = asyncio.Event()
        self._saver: asyncio.Task[None] | None = None
        self._save_wanted = False
        self.metrics.track_queue(lambda: len(self._tasks))
        self.heartbeat = Heartbeat(client, self.backends, domains, settings, self.metrics)
        self.registrar = (
            Registrar(client, settings.host) if settings.register_migrations else None
        )
        self.watch.listeners.append(self._on_domain_event)

    @property
    def client(self) -> BrokerClient:
        return self.deps.client

    def stop(self) -> None:
        """Stop polling, let in-flight work finish (bounded), then return from run()."""
        self._stop.set()

    async def run(self) -> None:
        for backend in self.backends:
            await backend.start()
        self.watch.start()
        heartbeats = asyncio.create_task(self.heartbeat.run(), name="heartbeats")
        registrar = (
            asyncio.create_task(self.registrar.run(), name="registrar")
            if self.registrar is not None
            else None
        )
        log.info(
            "agent %s started: backends %s, broker %s",
            self.settings.host,
            ", ".join(b.name for b in self.backends) or "none",
            ", ".join(self.client.urls),
        )
        try:
            await self._poll()
        finally:
            # Saved before draining: workers stopped by the drain still had work
            # (an outgoing migration to follow), and a restart must resume it.
            if self._saver is not None:
                await self._saver
            await self._save()
            await self._drain()
            for task in (heartbeats, registrar):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self.watch.close()
            await self.deps.results.close()
            await self.deps.uploads.close()
            for backend in self.backends:
                try:
                    await backend.close()
                except Exception:
                    log.exception("closing backend %s failed", backend.name)
            log.info("agent %s stopped", self.settings.host)

    # -- inbox ----------------------------------------------------------------------------

    async def _poll(self) -> None:
        self.after = await asyncio.to_thread(self.state.load)
        log.info("agent %s: inbox from revision %d", self.settings.host, self.after)
        backoff = Backoff(0.2, 5.0)
        stopper = asyncio.create_task(self._stop.wait())
        try:
            while not self._stop.is_set():
                poll = asyncio.create_task(
                    self.client.inbox(self.settings.host, self.after, self.settings.poll_wait)
                )
                await asyncio.wait({poll, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not poll.done():
                    poll.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ClientError):
                        await poll
                    return
                try:
                    inbox = poll.result()
                except ClientError as exc:
                    self.metrics.broker_failed()
                    delay = backoff.next()
                    log.warning("inbox poll failed (%s); retrying in %.1fs", exc, delay)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._stop.wait()
                    continue
                backoff.reset()
                self.metrics.broker_ok()
                for item in inbox.items:
                    self._dispatch(item)
                self.after = max(self.after, inbox.revision)
                self._save_soon()
        finally:
            stopper.cancel()

    def _dispatch(self, item: InboxItem) -> None:
        migration = item.migration
        key = (migration.id, item.direction)
        worker = self._workers.get(key)
        if worker is not None:
            worker.update(item)
            if migration.state.terminal:
                worker.stop()
            return
        if migration.state.terminal:
            return
        cls = Outgoing if item.direction == "outgoing" else Incoming
        worker = cls(item, self.deps)
        log.info(
            "migration %s: %s, domain %s, %s -> %s, %d vif records",
            migration.id,
            item.direction,
            migration.domain_uuid,
            migration.source_host,
            migration.destination_host,
            len(item.interfaces),
        )
        task = asyncio.create_task(worker.run(), name=f"{item.direction}-{migration.id}")
        self._workers[key] = worker
        self._tasks[key] = task
        task.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: _Key, task: asyncio.Task[None]) -> None:
        worker = self._workers.pop(key, None)
        self._tasks.pop(key, None)
        if task.cancelled() or task.exception() is None:
            self._crashes.pop(key, None)
            return
        # A bug or an unforeseen error: start the worker again from the latest
        # state after a growing pause, rather than forget the migration.
        crashes = self._crashes[key] = self._crashes.get(key, 0) + 1
        delay = min(30.0, 0.5 * 2 ** (crashes - 1))
        log.error(
            "migration %s: %s worker crashed (%d times); restarting in %.1fs",
            key[0], key[1], crashes, delay, exc_info=task.exception(),
        )  # fmt: skip
        if worker is not None and not self._stop.is_set():
            asyncio.get_running_loop().call_later(delay, self._restart, worker.item)

    def _restart(self, item: InboxItem) -> None:
        if not self._stop.is_set() and (item.migration.id, item.direction) not in self._workers:
            self._dispatch(item)

    def active(self) -> set[_Key]:
        """(migration id, direction) of every migration this agent is working on."""
        return set(self._workers)

    def resume_point(self) -> int:
        """The revision to resume the inbox from after a restart."""
        busy = [t.resume_revision for t in self._workers.values()]
        return min([self.after, *(r - 1 for r in busy if r is not None)])

    def _save_soon(self) -> None:
        """Save the resume point in the background: the next poll need not wait for
        an fsync (a restart resumes from an older point at worst, and is handed
        those items again). One save at a time, the latest point last."""
        self._save_wanted = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_latest())

    async def _save_latest(self) -> None:
        while self._save_wanted:
            self._save_wanted = False
            await self._save()

    async def _save(self) -> None:
        try:
            await asyncio.to_thread(self.state.save, max(0, self.resume_point()))
        except OSError as exc:
            log.error("cannot write state file %s: %s", self.state.path, exc)

    async def _drain(self) -> None:
        for worker in list(self._workers.values()):
            worker.stop()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self.settings.drain_timeout)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d migration workers did not finish in time; cancelled", len(late))
            await asyncio.gather(*late, return_exceptions=True)

    # -- local domain events ------------------------------------------------------------

    def _on_domain_event(self, event: DomainEvent) -> None:
        self.deps.resumes.note(event)
        if event.resumed:
            for worker in self._workers.values():
                if isinstance(worker, Incoming) and worker.domain_uuid == event.domain_uuid:
                    worker.on_resumed(event.at)
        if event.event in ("started", "stopped", "undefined"):
            self.heartbeat.poke()
        if self.registrar is not None:
            self.registrar.on_event(event)
