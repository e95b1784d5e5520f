"""Run a short-lived helper process (ovs-vsctl) from the event loop, cheaply.

``asyncio.create_subprocess_exec`` under uvloop forks the whole agent (libuv's
``fork()``: ~2.5 ms of CPU for an ~80 MB agent, on the loop) where
``subprocess.Popen`` uses ``vfork()`` (~0.7 ms). So the process is started
with Popen, its pipes are read through the loop (non-blocking, ``add_reader``)
and its exit is awaited on a pidfd: nothing blocks the loop beyond the vfork.

The process is killed and reaped when the caller is cancelled or its time
passes: no helper outlives the call that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from typing import IO


async def run(argv: list[str], within: float) -> tuple[bytes, bytes, int]:
    """``argv``'s stdout, stderr and exit status (negative: killed by that signal).

    OSError when it cannot be started; TimeoutError (process killed) past ``within`` s.
    """
    # vfork + exec: returns as soon as the child has exec'd (the point of this module)
    proc = subprocess.Popen(  # noqa: ASYNC220
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(within):
            assert proc.stdout is not None and proc.stderr is not None
            out, err = await asyncio.gather(_read_all(proc.stdout), _read_all(proc.stderr))
            rc = await _exited(proc)
        return out, err, rc
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()  # killed: reaped at once
        raise
    finally:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


async def _read_all(pipe: IO[bytes]) -> bytes:
    fd = pipe.fileno()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            await _readable(fd)
            continue
        if not data:
            return b"".join(chunks)
        chunks.append(data)


async def _exited(proc: subprocess.Popen[bytes]) -> int:
    """Its exit status, awaited on a pidfd (its pipes are closed: it is ending)."""
    if proc.poll() is None:
        try:
            fd = os.pidfd_open(proc.pid)
        except OSError:  # a kernel without pidfds (before 5.3)
            return await asyncio.to_thread(proc.wait)
        try:
            while proc.poll() is None:
                await _readable(fd)
        finally:
            os.close(fd)
    assert proc.returncode is not None
    return proc.returncode


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
