"""Issue 8: an XML and JSON attack corpus sent to every route that takes a body.

Each attack must be answered 4xx (never a hang: every request has a deadline),
read no file (a FIFO named by the XXE payloads: opening it for reading would
let our non-blocking writer in), make no connection (a loopback listener
named by the payloads counts the ones it gets), and /healthz, polled by
another process meanwhile, must answer under 100 ms throughout. The number of
attacks sent and the worst /healthz latency are printed (``ATTACKS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from api_helpers import iface, mac
from served import PollStats, Served, healthz_poller, served_broker

ROUNDS = 3  # as in test_api_limits: passes on a round with every poll under the bound
BOUND_MS = 100
SECRET = "s3cr3t-never-to-be-seen"


def _routes(s: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("POST", "/v1/migrations"),
        ("POST", f"/v1/migrations/{s['id']}/results"),
        ("POST", f"/v1/migrations/{s['id']}/resumed"),
        ("PUT", f"/v1/domains/{s['dom']}/interfaces/{mac(1)}"),
        ("PUT", f"/v1/domains/{s['dom']}/interfaces"),
        ("PUT", "/v1/hosts/src"),
        ("POST", "/v1/hosts/dst/preflight"),
    ]


def _laugh(i: int) -> bytes:
    """<!ENTITY b "&a;&a;…"> … <!ENTITY j "&i;&i;…">: ten of the one before, nine deep."""
    return b'<!ENTITY %c "%s">' % (ord("b") + i, (b"&%c;" % (ord("a") + i)) * 10)


#: XInclude elements are not processed: such a document is a plain interface
#: with an unknown child (ignored), so it may be stored. It still may neither
#: read the file nor connect anywhere, which the test checks as for the rest.
MAY_BE_STORED = {"xml/xinclude"}


def _corpus(secret: Path, fifo: Path, port: int) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(name, content type, body, extra headers)."""
    url = f"http://127.0.0.1:{port}/x"
    iface_open = b"<interface type='bridge'><mac address='52:54:00:00:00:01'/>"
    xml: dict[str, bytes] = {
        "xxe-file": (f'<?xml version="1.0"?><!DOCTYPE i [<!ENTITY e SYSTEM "file://{secret}">]>'
                     f"<interface type='bridge'><mac address='52:54:00:00:00:01'/>"
                     f"<target dev='&e;'/></interface>").encode(),
        "xxe-fifo": (f'<!DOCTYPE i [<!ENTITY e SYSTEM "{fifo}">]>'
                     f"<interface><mac address='52:54:00:00:00:01'/><model type='&e;'/>"
                     f"</interface>").encode(),
        "xxe-external-dtd-fifo": (f'<!DOCTYPE interface SYSTEM "{fifo}">'.encode()
                                  + iface_open + b"</interface>"),
        "xxe-loopback": (f'<!DOCTYPE i [<!ENTITY e SYSTEM "{url}">]>'.encode() + iface_open
                         + b"<target dev='&e;'/></interface>"),
        "xxe-parameter-entity": (f'<!DOCTYPE i [<!ENTITY % p SYSTEM "{url}"> %p;]>'.encode()
                                 + iface_open + b"</interface>"),
        "xxe-external-dtd": f'<!DOCTYPE interface SYSTEM "{url}">'.encode() + iface_open
                            + b"</interface>",
        "xinclude": (b"<interface xmlns:xi='http://www.w3.org/2001/XInclude'>"
                     + f"<mac address='52:54:00:00:00:01'/><xi:include href='{url}'/>".encode()
                     + f"<xi:include href='file://{secret}' parse='text'/></interface>".encode()),
        "billion-laughs": (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "lol">'
                           + b"".join(_laugh(i) for i in range(9))
                           + b"]>" + iface_open + b"<target dev='&j;'/></interface>"),
        "quadratic-blowup": (b'<!DOCTYPE q [<!ENTITY x "' + b"x" * 50_000 + b'">]>' + iface_open
                             + b"<target dev='" + b"&x;" * 20_000 + b"'/></interface>"),
        "deep-nesting": b"<a>" * 100_000 + b"</a>" * 100_000,
        "invalid-utf8": iface_open + b"<target dev='\xff\xfe\xc3\x28'/></interface>",
        "nul": iface_open + b"<target dev='a\x00b'/></interface>",
        "lone-surrogate": iface_open + b"<target dev='&#xD800;'/></interface>",
        "surrogate-bytes": iface_open + b"<target dev='\xed\xa0\x80'/></interface>",
    }
    jsn: dict[str, bytes] = {
        "deep-array": b"[" * 100_000 + b"]" * 100_000,
        "deep-object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        "invalid-utf8": b'{"mac": "\xff\xfe\xc3\x28"}',
        "nul": b'{"mac": "52:54:00:00:00:01", "target_dev": "a\x00b"}',
        "lone-surrogate": b'{"interfaces": [{"mac": "52:54:00:00:00:01", "virtualport": '
                          b'{"portdata": "\\ud800"}}], "domain_uuid": "\\udfff"}',
        "huge-number": b'{"ttl_seconds": 1' + b"0" * 100_000 + b"}",
        "duplicate-keys": b'{"mac": "52:54:00:00:00:01", "mac": "52:54:00:00:00:02"}' * 1,
        "billion-keys": b'{"source": {' + b",".join(b'"k%d":"v"' % i for i in range(200_000))
                        + b"}}",
    }
    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024) + b"}", compresslevel=9)
    attacks = [(f"xml/{k}", "application/xml", v, {}) for k, v in xml.items()]
    attacks += [(f"json/{k}", "application/json", v, {}) for k, v in jsn.items()]
    attacks.append(("json/gzip-bomb", "application/json", bomb, {"Content-Encoding": "gzip"}))
    attacks.append(("xml/gzip-bomb", "application/xml", bomb, {"Content-Encoding": "gzip"}))
    return attacks


@contextlib.asynccontextmanager
async def listener() -> AsyncIterator[tuple[int, list[str]]]:
    """A loopback TCP listener that records every connection made to it."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()


def _fifo_opened_for_reading(fifo: Path) -> bool:
    """A non-blocking open for writing succeeds only while a reader has it open."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        assert exc.errno == errno.ENXIO, exc
        return False
    os.close(fd)
    return True


async def _round(
    b: Served, s: aiohttp.ClientSession, attacks: list[Any], routes: list[tuple[str, str]],
    fifo: Path,
) -> tuple[PollStats, list[str], int, bool]:
    problems: list[str] = []
    sent = 0
    fifo_read = False
    timeout = aiohttp.ClientTimeout(total=60)  # a hang fails the test, never blocks it
    with healthz_poller(b.url) as poller:
        for method, path in routes:
            for name, ctype, body, extra in attacks:
                headers = {**b.auth(), "Content-Type": ctype, **extra}
                async with s.request(method, b.url + path, data=body, headers=headers,
                                     timeout=timeout) as r:
                    text = await r.text(errors="replace")
                sent += 1
                fifo_read = fifo_read or _fifo_opened_for_reading(fifo)
                if not 400 <= r.status < 500 and not (
                    name in MAY_BE_STORED and r.status < 300
                ):
                    problems.append(f"{method} {path} {name}: {r.status} {text[:200]}")
                elif r.status >= 400 and r.content_type != "application/problem+json":
                    problems.append(f"{method} {path} {name}: {r.content_type}")
                if SECRET in text:
                    problems.append(f"{method} {path} {name}: the secret file leaked")
        stats = poller.stop()
    return stats, problems, sent, fifo_read


async def test_attack_corpus_is_refused_and_healthz_stays_fast(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    async with listener() as (port, connections), served_broker(tmp_path) as b, \
            aiohttp.ClientSession() as s:
        dom = str(uuid.uuid4())
        async with s.post(b.url + "/v1/migrations", headers=b.auth(), json={
                "domain_uuid": dom, "source_host": "src", "destination_host": "dst"}) as r:
            scene = {"id": (await r.json())["id"], "dom": dom}
        async with s.put(f"{b.url}/v1/domains/{dom}/interfaces", headers=b.auth(),
                         json={"interfaces": [iface(mac(1))]}) as r:
            assert r.status == 200
        attacks, routes = _corpus(secret, fifo, port), _routes(scene)
        rounds: list[PollStats] = []
        total = 0
        for _ in range(ROUNDS):
            started = time.time()
            stats, problems, sent, fifo_read = await _round(b, s, attacks, routes, fifo)
            total += sent
            rounds.append(stats)
            assert not problems, "\n".join(problems)
            assert not fifo_read, "a payload made the broker open the FIFO"
            assert connections == [], f"a payload made the broker connect: {connections}"
            print("ATTACKS", json.dumps({"sent": sent, "attacks": len(attacks),
                                         "routes": len(routes), "seconds": round(
                                             time.time() - started, 1), **stats.__dict__}))
            if stats.worst_ms < BOUND_MS:
                break
        assert SECRET not in b.log.read_text()
    assert min(r.worst_ms for r in rounds) < BOUND_MS, rounds
