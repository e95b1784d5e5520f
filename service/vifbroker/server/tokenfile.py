"""The token file while the broker runs: re-read on change and on SIGHUP;
listed and revoked by ``vifbroker token list|revoke``.

The watcher looks at the file's identity (device, inode, size, mtime) every
``interval`` seconds — a cheap ``stat`` — and re-reads it when that changed,
which also catches a Kubernetes Secret's atomic symlink swap. A file that
fails to parse keeps the tokens in force and logs why: a typo must never lock
every agent out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from .auth import TokenFileError, TokenRegistry, load_tokens

log = logging.getLogger(__name__)

RELOAD_INTERVAL_SECONDS = 0.5


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class TokenWatcher:
    def __init__(
        self, path: Path, registry: TokenRegistry, interval: float = RELOAD_INTERVAL_SECONDS
    ) -> None:
        self.path = path
        self.registry = registry
        self.interval = interval
        self._seen = _identity(path)
        self._wake = asyncio.Event()

    def reload_now(self) -> None:
        """Ask for a re-read at once (the SIGHUP handler)."""
        self._wake.set()

    def reload(self) -> bool:
        """Re-read the file; keep the tokens in force when it does not parse."""
        self._seen = _identity(self.path)
        try:
            fresh = load_tokens(self.path)
        except TokenFileError as exc:
            log.error("token file not reloaded, the previous tokens stay in force: %s", exc)
            return False
        self.registry.replace(fresh)
        log.info("token file reloaded: %d tokens", len(fresh))
        return True

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            forced = self._wake.is_set()
            self._wake.clear()
            if forced or _identity(self.path) != self._seen:
                self.reload()


TOKEN_WATCHER = web.AppKey("vifbroker.token_watcher", TokenWatcher)


async def watch_tokens(app: web.Application) -> AsyncIterator[None]:
    """App cleanup context: run the app's TokenWatcher while it serves."""
    task = asyncio.create_task(app[TOKEN_WATCHER].run(), name="vifbroker-tokens")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ------------------------------------------------------------- list and revoke


def list_tokens(path: Path) -> list[dict[str, str]]:
    """Name, role and host of each token (never its hash)."""
    doc = _read(path)
    found: list[dict[str, str]] = []
    for t in doc.get("tokens", []):
        if isinstance(t, dict):
            name = str(t.get("name") or t.get("host") or t.get("role"))
            found.append({"name": name} | {k: str(t[k]) for k in ("role", "host") if k in t})
    return found


def revoke_token(path: Path, name: str) -> int:
    """Remove every token called ``name`` (atomically, mode 0600); how many there were."""
    load_tokens(path)  # refuse to rewrite a file that does not parse
    text = path.read_text(encoding="utf-8")
    blocks = re.split(r"(?m)^(?=\[\[tokens\]\])", text)
    keep = [b for b in blocks if not _names(b, name)]
    removed = len(blocks) - len(keep)
    if removed:
        tmp = path.with_name(path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(keep))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        load_tokens(path)  # what was written still parses
    return removed


def _names(block: str, name: str) -> bool:
    try:
        tables = tomllib.loads(block).get("tokens", [])
    except tomllib.TOMLDecodeError:
        return False
    return any(isinstance(t, dict) and t.get("name") == name for t in tables)


def _read(path: Path) -> dict[str, list[dict[str, object]]]:
    try:
        doc: dict[str, list[dict[str, object]]] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TokenFileError(f"cannot read token file {path}: {exc}") from exc
    return doc
