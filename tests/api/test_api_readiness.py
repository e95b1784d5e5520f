"""Issue 8, finding 2: /readyz means "this replica can take a write now".

The broker runs in a mount namespace of its own whose database lives on a
1 MiB tmpfs; the test fills that file system (through /proc/PID/root, the
broker's view of it) and sees /readyz, and a real write, answer 503 with the
reason, then frees it and sees both succeed again. A ``SELECT 1`` on a
reader, which the old readiness ran, succeeds throughout.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from served import Served, served_broker

from testkit import STRICT, wait_until


def _require_namespaces() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        msg = "needs root and unshare(1) to give the broker a tiny file system"
        if STRICT:
            pytest.fail(msg)
        pytest.skip(msg)


def _fill(directory: Path) -> None:
    """Write until the file system is full."""
    chunk = b"\0" * 65536
    with (directory / "filler").open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                chunk = chunk[: len(chunk) // 2]
                if not chunk:
                    return


async def _status(
    s: aiohttp.ClientSession, b: Served, path: str, method: str = "GET", **kw: Any
) -> tuple[int, dict[str, Any]]:
    async with s.request(method, b.url + path, **kw) as r:
        return r.status, await r.json(content_type=None)


async def test_readyz_follows_whether_a_write_can_be_made(tmp_path: Path) -> None:
    _require_namespaces()
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    mount = f"mount -t tmpfs -o size=1m tmpfs {db_dir} && exec \"$@\""
    async with served_broker(
        tmp_path, args=("--db", f"sqlite:///{db_dir}/vifbroker.db"),
        prefix=("unshare", "-m", "sh", "-c", mount, "sh"),
    ) as b, aiohttp.ClientSession() as s:
        inside = Path(f"/proc/{b.proc.pid}/root") / str(db_dir).lstrip("/")
        assert (inside / "vifbroker.db").exists()  # the broker's own view
        assert not (db_dir / "vifbroker.db").exists()  # not ours: its own tmpfs
        assert (await _status(s, b, "/readyz"))[0] == 200

        _fill(inside)
        # The write-ahead log needs new blocks for the next commits: none left.
        async def unready() -> bool:
            return (await _status(s, b, "/readyz"))[0] == 503

        await wait_until(unready, timeout=30)
        _, doc = await _status(s, b, "/readyz")
        assert doc["type"] == "urn:vifbroker:problem:unavailable"
        assert "full" in doc["detail"].lower(), doc
        body = {"domain_uuid": str(uuid.uuid4()), "source_host": "src", "destination_host": "dst"}
        status, _ = await _status(s, b, "/v1/migrations", method="POST", json=body,
                                  headers=b.auth())
        assert status == 503  # what readiness said: writes fail

        (inside / "filler").unlink()

        async def ready() -> bool:
            return (await _status(s, b, "/readyz"))[0] == 200

        await wait_until(ready, timeout=30)
        status, _ = await _status(s, b, "/v1/migrations", method="POST", json=body,
                                  headers=b.auth())
        assert status == 201
        with contextlib.suppress(FileNotFoundError):
            (inside / "filler").unlink()
