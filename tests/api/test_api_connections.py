"""Issue 8, findings 6 and 7: the HTTP layer under the app, spoken to over raw sockets.

Slow or idle connections are reaped, the number of connections is capped,
and the HTTP parser's own refusals are problem documents that echo nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import Any

import pytest
from api_helpers import Broker

# Short timeouts so that the tests wait little; each wait is on a condition
# (the server closing the socket) with a deadline far above the timeout.
FAST = {"header_timeout_seconds": 0.5, "keepalive_timeout_seconds": 0.8, "max_connections": 4}
DEADLINE = 15.0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(FAST)


async def _connect(broker: Broker) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    server = broker.client.server
    return await asyncio.open_connection(server.host, server.port)


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    async with asyncio.timeout(DEADLINE):
        return await reader.read()


def _status_and_body(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_slow_headers_are_answered_408_and_closed(broker: Broker) -> None:
    reader, writer = await _connect(broker)

    async def drip() -> None:
        # One byte at a time, never finishing the headers (a slow-loris client).
        for byte in GET_HEALTHZ[:-4]:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)
            if writer.is_closing() or reader.at_eof():
                return

    dripping = asyncio.create_task(drip())
    try:
        raw = await _read_until_closed(reader)
    finally:
        dripping.cancel()
        writer.close()
    status, headers, body = _status_and_body(raw)
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["type"] == "urn:vifbroker:problem:request-timeout"


async def test_a_connection_that_sends_nothing_is_closed(broker: Broker) -> None:
    reader, writer = await _connect(broker)
    raw = await _read_until_closed(reader)
    writer.close()
    assert _status_and_body(raw)[0] == 408


async def test_idle_keepalive_is_closed_and_header_time_counts_per_request(
    broker: Broker,
) -> None:
    reader, writer = await _connect(broker)
    writer.write(GET_HEALTHZ)
    async with asyncio.timeout(DEADLINE):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(_status_and_body(head)[1]["content-length"])
        await reader.readexactly(length)
    assert head.startswith(b"HTTP/1.1 200")
    # Idle after a complete exchange: closed by the keep-alive timeout, no answer.
    assert await _read_until_closed(reader) == b""
    writer.close()

    # A second request begun but never finished: the header timeout applies.
    reader, writer = await _connect(broker)
    writer.write(GET_HEALTHZ)
    async with asyncio.timeout(DEADLINE):
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(_status_and_body(head)[1]["content-length"]))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost:")
    raw = await _read_until_closed(reader)
    writer.close()
    assert _status_and_body(raw)[0] == 408


async def test_connections_past_the_cap_get_503(broker: Broker) -> None:
    # The test client holds none open: four idle connections fill the cap.
    held = [await _connect(broker) for _ in range(FAST["max_connections"])]
    try:
        reader, writer = await _connect(broker)
        raw = await _read_until_closed(reader)
        writer.close()
        status, _, body = _status_and_body(raw)
        assert status == 503
        assert json.loads(body)["type"] == "urn:vifbroker:problem:unavailable"
    finally:
        for _, w in held:
            w.close()


async def test_oversized_header_is_431_problem_without_echo(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "S3CR3T" * 2000
    caplog.set_level(logging.DEBUG)
    reader, writer = await _connect(broker)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {secret}\r\n\r\n".encode())
    raw = await _read_until_closed(reader)
    writer.close()
    status, headers, body = _status_and_body(raw)
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert headers["server"] == "vifbroker"
    assert json.loads(body)["type"] == "urn:vifbroker:problem:headers-too-large"
    assert b"S3CR3T" not in raw
    assert "S3CR3T" not in caplog.text


async def test_too_many_headers_is_431(broker: Broker) -> None:
    reader, writer = await _connect(broker)
    many = "".join(f"X-H{i}: v\r\n" for i in range(200))
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
    raw = await _read_until_closed(reader)
    writer.close()
    assert _status_and_body(raw)[0] == 431


@pytest.mark.parametrize(
    "request_bytes",
    [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40 + b"\r\n\r\n",  # TLS hello
     b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: <script>\r\n\r\n",
     b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"GET /he\x00althz HTTP/1.1\r\n\r\n"],
    ids=["tls-hello", "bad-header-name", "cl-and-te", "nul-in-path"],
)
async def test_parser_errors_are_problems_that_echo_nothing(
    broker: Broker, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reader, writer = await _connect(broker)
    writer.write(request_bytes)
    raw = await _read_until_closed(reader)
    writer.close()
    status, headers, body = _status_and_body(raw)
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["type"] == "urn:vifbroker:problem:malformed"
    assert b"<script>" not in raw and "<script>" not in caplog.text
    assert "aiohttp" not in headers["server"].lower()


def test_serve_raises_the_open_file_soft_limit_to_the_hard_limit() -> None:
    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "from vifbroker.server.cli import raise_open_file_limit\n"
        "print(raise_open_file_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    limit, soft, hard = map(int, out)
    assert limit == soft == hard
