"""The lean reference: the broker's work for an upload and its handoff, written out by hand.

What a single-vif upload must do, and no more, on the same aiohttp+uvloop:
bearer authentication (sha256 of the token, a dict, ``compare_digest``); the
uploader check against the domain's active migration, held in memory; the
body read with a size bound and validated by the broker's own ``Interface``
model; the vif's next generation; then group commit as the broker's (SQLite,
WAL, ``synchronous=FULL``, 2 KiB pages): the vif row upserted, the migration's
revision and count updated, the revision kept in ``meta``, the COMMIT on a
thread, the answer (JSON, ETag) only after it. And the destination's side of a
handoff: ``GET /v1/hosts/{host}/inbox?after=N&wait=S`` parks until a commit
touches the host, then answers the migrations changed after N with their
records (JSON, the broker's field names), nothing of it before the commit.

What it leaves out is what separates it from the broker: request ids,
metrics, logs, problem documents, the connection layer's limits, the watch
cache's bounds and SQL fallback, the rules of several vifs, results and
states. The difference between the two is what those cost
(``bench_upload``'s and ``bench_handoff``'s ``lean`` figures).

Usage (by the benches): lean_server.py PORT DB TOKENS_JSON [LAYERS], where
TOKENS_JSON maps each token to its agent's host (null for a controller), and
LAYERS (for ``upload_layers.py``) names broker parts to use in place of the
lean ones, comma-separated: ``middleware`` (the broker's request middleware,
which then authenticates), ``store`` (the broker's SQLiteStore for migrations
and uploads; the inbox then answers nothing), ``connections`` (the broker's
connection layer, ``BrokerRunner``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import queue
import sqlite3
import sys
import threading
import types
import uuid
from datetime import UTC, datetime
from typing import Any

import uvloop
from aiohttp import web

from vifbroker.model import Interface, MigrationCreate
from vifbroker.server.auth import Principal, Role, TokenRegistry
from vifbroker.server.connections import BrokerRunner, ConnectionLimits
from vifbroker.server.context import CTX
from vifbroker.server.metrics import Metrics
from vifbroker.server.middleware import Handler, front_layer, principal
from vifbroker.store.sqlite import SQLiteStore

MAX_BODY = 65536
SCHEMA = """
CREATE TABLE migrations (id TEXT PRIMARY KEY, domain_uuid TEXT, source_host TEXT,
  destination_host TEXT, state TEXT, revision INTEGER, vif_count INTEGER);
CREATE INDEX migrations_revision ON migrations (revision);
CREATE INDEX migrations_source ON migrations (source_host);
CREATE TABLE vifs (migration_id TEXT, mac TEXT, interface TEXT, generation INTEGER,
  status TEXT, PRIMARY KEY (migration_id, mac));
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);
"""
UPSERT_VIF = (
    "INSERT INTO vifs VALUES (?, ?, ?, ?, 'pending') ON CONFLICT (migration_id, mac)"
    " DO UPDATE SET interface = excluded.interface, generation = excluded.generation"
)

UPDATE_MIGRATION = "UPDATE migrations SET revision = ?, vif_count = ? WHERE id = ?"


class Active:
    """A domain's active migration, as the lean server holds it."""

    __slots__ = ("destination_host", "domain_uuid", "generations", "id", "revision", "source_host",
                 "texts")  # fmt: skip

    def __init__(self, migration_id: str, domain_uuid: str, source: str, destination: str) -> None:
        self.id, self.domain_uuid = migration_id, domain_uuid
        self.source_host, self.destination_host = source, destination
        self.generations: dict[str, int] = {}
        self.texts: dict[str, str] = {}  # by MAC: the interface as stored
        self.revision = 0

    def item(self) -> dict[str, Any]:
        """This migration as an inbox item (what the destination applies)."""
        return {
            "revision": self.revision,
            "direction": "incoming",
            "migration": {"id": self.id, "domain_uuid": self.domain_uuid,
                          "source_host": self.source_host,
                          "destination_host": self.destination_host},
            "records": [
                {"domain_uuid": self.domain_uuid, "mac": mac,
                 "generation": self.generations[mac], "interface": json.loads(text)}
                for mac, text in self.texts.items()
            ],
        }  # fmt: skip


LAYERS = frozenset({"middleware", "store", "connections"})


def _bare(handler: Handler) -> Handler:
    return handler


def serve(port: int, db: str, tokens_json: str, layers: frozenset[str] = frozenset()) -> None:
    if layers - LAYERS:
        raise SystemExit(f"unknown layers {sorted(layers - LAYERS)}; known: {sorted(LAYERS)}")
    digests: dict[bytes, tuple[bytes, str | None]] = {
        (digest := hashlib.sha256(token.encode()).digest()): (digest, host)
        for token, host in json.loads(tokens_json).items()
    }
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA page_size=2048")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    active: dict[str, Active] = {}
    revision = 0
    queued: list[tuple[Active, str, str, asyncio.Future[int]]] = []
    log: dict[str, list[Active]] = {}  # by destination host: its migrations, oldest change first
    parked: dict[str, list[asyncio.Future[None]]] = {}  # by host: its parked long-polls
    commits: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, list[Any]]] = queue.SimpleQueue()
    running = False

    def committer() -> None:
        while True:
            loop, answers = commits.get()
            conn.execute("COMMIT")
            loop.call_soon_threadsafe(committed, answers)

    def start() -> None:
        nonlocal running, revision
        batch = queued[:]
        queued.clear()
        running = bool(batch)
        if not batch:
            return
        vifs, migrations, answers = [], [], []
        for migration, mac, text, fut in batch:
            generation = migration.generations.get(mac, 0) + 1
            migration.generations[mac] = generation
            migration.texts[mac] = text
            revision += 1
            migration.revision = revision
            vifs.append((migration.id, mac, text, generation))
            migrations.append((revision, len(migration.generations), migration.id))
            answers.append((fut, generation, migration))
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(UPSERT_VIF, vifs)
        conn.executemany(UPDATE_MIGRATION, migrations)
        conn.execute(
            "INSERT INTO meta VALUES ('revision', ?) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value",
            (revision,),
        )
        commits.put((asyncio.get_running_loop(), answers))

    def committed(answers: list[tuple[asyncio.Future[int], int, Active]]) -> None:
        for _, _, migration in answers:  # durable now: first the destinations, as the broker
            changed = log.setdefault(migration.destination_host, [])
            if migration in changed:
                changed.remove(migration)
            changed.append(migration)
            for waiter in parked.pop(migration.destination_host, []):
                if not waiter.done():
                    waiter.set_result(None)
        for fut, generation, _ in answers:
            fut.set_result(generation)
        start()

    broker = BrokerParts(db, digests) if layers else None

    def authenticate(request: web.Request) -> str | None:
        if "middleware" in layers:  # the broker's guard has authenticated the request
            return principal(request).host
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        digest = hashlib.sha256(token.strip().encode()).digest()
        found = digests.get(digest)  # by digest, confirmed in constant time (as the broker)
        if scheme.lower() != "bearer" or found is None or not hmac.compare_digest(found[0], digest):
            raise web.HTTPUnauthorized()
        return found[1]

    async def create(request: web.Request) -> web.Response:
        if authenticate(request) is not None:
            raise web.HTTPForbidden()
        doc = await request.json()
        if "store" in layers:
            assert broker is not None
            return web.json_response({"id": await broker.create(doc)}, status=201)
        migration = active[doc["domain_uuid"]] = Active(
            str(uuid.uuid4()), doc["domain_uuid"], doc["source_host"], doc["destination_host"]
        )
        conn.execute(
            "INSERT INTO migrations VALUES (?, ?, ?, ?, 'pending', 0, 0)",
            (migration.id, doc["domain_uuid"], doc["source_host"], doc["destination_host"]),
        )
        return web.json_response({"id": migration.id}, status=201)

    async def put(request: web.Request) -> web.Response:
        nonlocal running
        host = authenticate(request)
        domain_uuid, mac = request.match_info["uuid"], request.match_info["mac"]
        if "store" in layers:
            assert broker is not None
            if host is not None and await broker.source_of(domain_uuid) != host:
                raise web.HTTPNotFound()
        else:
            migration = active.get(domain_uuid)
            if migration is None or (host is not None and migration.source_host != host):
                raise web.HTTPNotFound()
        body = await request.read()
        if len(body) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(MAX_BODY, len(body))
        interface = Interface.model_validate_json(body)
        if interface.mac != mac:
            raise web.HTTPUnprocessableEntity()
        if "store" in layers:
            assert broker is not None
            generation = await broker.upload(domain_uuid, interface, host)
            return web.json_response(
                {"domain_uuid": domain_uuid, "mac": mac, "generation": generation},
                headers={"ETag": f'"{generation}"'},
            )
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        queued.append((migration, mac, interface.model_dump_json(exclude_none=True), fut))
        if not running:
            running = True
            asyncio.get_running_loop().call_soon(start)
        generation = await fut
        return web.json_response(
            {"domain_uuid": domain_uuid, "mac": mac, "generation": generation},
            headers={"ETag": f'"{generation}"'},
        )

    async def inbox(request: web.Request) -> web.Response:
        host = request.match_info["host"]
        agent = authenticate(request)
        if agent is not None and agent != host:
            raise web.HTTPForbidden()
        after = int(request.query.get("after", "0"))
        wait = min(float(request.query.get("wait", "0")), 60.0)
        if wait > 0 and not any(m.revision > after for m in log.get(host, ())):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            parked.setdefault(host, []).append(waiter)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await waiter
        items = [m.item() for m in log.get(host, ()) if m.revision > after]
        return web.json_response({"revision": revision, "items": items})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    threading.Thread(target=committer, daemon=True).start()
    # The broker's request layer around each handler, as the broker adds its routes.
    wrap = front_layer() if "middleware" in layers else _bare
    app = web.Application(client_max_size=MAX_BODY)
    if broker is not None:
        app[CTX] = broker.context  # what the broker's request layer reads
    app.router.add_post("/v1/migrations", wrap(create))
    app.router.add_put("/v1/domains/{uuid}/interfaces/{mac}", wrap(put))
    app.router.add_get("/v1/hosts/{host}/inbox", wrap(inbox))
    app.router.add_get("/healthz", wrap(health))

    async def run() -> None:
        if "store" in layers:
            assert broker is not None
            await broker.store.open()
        runner: web.AppRunner
        if "connections" in layers:
            runner = BrokerRunner(app, ConnectionLimits(), access_log=None)
        else:
            runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()  # until terminated

    uvloop.run(run())


class BrokerParts:
    """The broker's own parts, for the layers swapped in (``upload_layers.py``)."""

    def __init__(self, db: str, digests: dict[bytes, tuple[bytes, str | None]]) -> None:
        registry = TokenRegistry(
            [
                (digest.hex(), Principal(digest.hex()[:8], Role.AGENT if host else Role.CONTROLLER,
                                         host))
                for digest, (_, host) in digests.items()
            ]
        )  # fmt: skip
        # The middleware reads the tokens and the metrics from the app's context.
        self.context: Any = types.SimpleNamespace(tokens=registry, metrics=Metrics())
        self.store = SQLiteStore(db + "-broker")

    async def create(self, doc: dict[str, str]) -> str:
        request = MigrationCreate(domain_uuid=doc["domain_uuid"], source_host=doc["source_host"],
                                  destination_host=doc["destination_host"])  # fmt: skip
        made, _ = await self.store.create_migration(request, datetime.now(UTC))
        return made.id

    async def source_of(self, domain_uuid: str) -> str:
        return (await self.store.active_parties(domain_uuid)).source_host

    async def upload(self, domain_uuid: str, interface: Interface, host: str | None) -> int:
        uploaded = await self.store.put_interfaces(
            domain_uuid, [interface], datetime.now(UTC), source_host=host
        )
        return uploaded.generations[0][1]


if __name__ == "__main__":
    named = frozenset(filter(None, sys.argv[4].split(","))) if len(sys.argv) > 4 else frozenset()
    serve(int(sys.argv[1]), sys.argv[2], sys.argv[3], named)
