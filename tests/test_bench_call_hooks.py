"""``bench/handoff_calls.py``'s hooks still fit aiohttp and count a handoff's calls.

The hooks patch aiohttp's request handler and response by name; an aiohttp
upgrade that changed either would otherwise show only when someone next
counted a handoff. Here a small server with the hooks loaded takes rounds of
a long-poll, an upload and the long-poll's answer, and must have counted each
round but the first, from the upload to the answer, and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from testkit import free_port, wait_until

HOOKS = Path(__file__).resolve().parent.parent / "bench" / "call_hooks"

SERVER = """
import asyncio, sys
from aiohttp import web

waiters = []

async def upload(request):
    await request.read()
    for fut in waiters:
        fut.set_result(None)
    waiters.clear()
    return web.json_response({"generation": 1})

async def inbox(request):
    fut = asyncio.get_running_loop().create_future()
    waiters.append(fut)
    await fut
    return web.Response(body=b'{"revision":1,"items":[1]}', content_type="application/json")

async def parked(request):
    return web.json_response(len(waiters))

app = web.Application()
app.router.add_put("/upload", upload)
app.router.add_get("/inbox", inbox)
app.router.add_get("/healthz", parked)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""

ROUNDS = 3


async def _rounds(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:

        async def up() -> bool:
            try:
                async with session.get(f"{base}/healthz") as resp:
                    return resp.status == 200
            except aiohttp.ClientConnectionError:
                return False

        async def parked() -> bool:
            async with session.get(f"{base}/healthz") as resp:
                return bool(await resp.json() == 1)

        await wait_until(up)
        for _ in range(ROUNDS):
            poll = asyncio.create_task(session.get(f"{base}/inbox"))
            await wait_until(parked)
            async with session.put(f"{base}/upload", data=b"{}") as resp:
                assert resp.status == 200
            async with await poll as resp:
                assert await resp.json() == {"revision": 1, "items": [1]}


async def test_the_hooks_count_each_round_from_upload_to_answer(tmp_path: Path) -> None:
    port = free_port()
    path = os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "HANDOFF_CALLS_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env)
    try:
        await _rounds(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    (counts,) = tmp_path.glob("*.json")
    doc = json.loads(counts.read_text())
    assert doc["handoffs"] == ROUNDS - 1  # the first window is left out
    calls = doc["calls"]
    # the upload's handler ran inside the window, and it was counted once a round;
    # the long-poll's handler was entered before it (not counted) and resumed inside
    assert calls["<string>:upload"] == ROUNDS - 1, calls
    assert calls["<string>:inbox"] == ROUNDS - 1, calls
    assert "<string>:parked" not in calls, calls  # asked before each upload: outside
    assert any(name.startswith("C ") for name in calls), calls
