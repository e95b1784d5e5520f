"""systemd's sd_notify protocol: readiness, watchdog pings, stopping — nothing else.

A service started with ``Type=notify`` gets ``NOTIFY_SOCKET`` (a path, or
``@name`` in the abstract namespace) and sends it datagrams such as
``READY=1``. With ``WatchdogSec=`` it also gets ``WATCHDOG_USEC`` and must send
``WATCHDOG=1`` more often than that, or systemd restarts it. The pings come
from the event loop itself, so a loop that hangs stops them: exactly what the
watchdog is for. Outside systemd every call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and mine else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (e.g. ``READY=1``) to systemd; False when not under systemd."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:  # systemd gone or socket not ours: never fatal
            log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), exc)
            return False
        return True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    @contextlib.asynccontextmanager
    async def watchdog(self) -> AsyncIterator[None]:
        """Ping ``WATCHDOG=1`` at half the interval systemd asked for, while the block runs."""
        if not self.enabled or self.watchdog_seconds is None:
            yield
            return
        task = asyncio.create_task(self._ping(self.watchdog_seconds / 2), name="sd-watchdog")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _ping(self, every: float) -> None:
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(every)
