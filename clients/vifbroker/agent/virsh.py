"""One read-only ``virsh`` call with a timeout: the agent's only way to run virsh."""

from __future__ import annotations

import asyncio
import contextlib


def virsh_argv(virsh: str, uri: str | None, *args: str) -> list[str]:
    return [virsh, "-r", *(["-c", uri] if uri else []), *args]


async def run_virsh(
    virsh: str, uri: str | None, *args: str, seconds: float
) -> tuple[int, bytes, str]:
    """``(returncode, stdout, stderr)``; OSError when virsh cannot start, TimeoutError
    (after killing it) when it runs past ``seconds``."""
    proc = await asyncio.create_subprocess_exec(
        *virsh_argv(virsh, uri, *args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(seconds):
            out, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out, err.decode("utf-8", "replace").strip()
