"""spawn.run: a helper process's output and status, and no process outliving its call."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from testkit import wait_until
from vifbroker.backends import spawn


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_output_error_and_status_of_a_large_answer() -> None:
    script = "printf err >&2; head -c 300000 /dev/zero; exit 3"
    out, err, rc = await spawn.run(["/bin/sh", "-c", script], 10)
    assert (len(out), set(out), err, rc) == (300000, {0}, b"err", 3)


async def test_a_missing_binary_is_an_oserror() -> None:
    with pytest.raises(OSError):
        await spawn.run(["/nonexistent/ovs-vsctl"], 10)


@pytest.mark.parametrize("how", ["timeout", "cancel"])
async def test_the_process_is_killed_when_the_call_ends(tmp_path: Path, how: str) -> None:
    pidfile = tmp_path / "pid"
    argv = ["/bin/sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"]
    task = asyncio.create_task(spawn.run(argv, 0.5 if how == "timeout" else 30))
    await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    pid = int(pidfile.read_text())
    if how == "cancel":
        task.cancel()
    with pytest.raises(asyncio.CancelledError if how == "cancel" else TimeoutError):
        await task
    assert not _alive(pid)  # killed and reaped before the call returned
