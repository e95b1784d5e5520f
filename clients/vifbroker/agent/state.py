"""The agent's small persistent state: where to resume its inbox after a restart."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


class StateFile:
    """``{"after": N}`` in ``DIR/agent-<host>.json``, replaced atomically.

    ``after`` is the inbox revision to resume from: every migration changed
    after it is handed out again, so it is held back to just before the oldest
    migration this agent had unfinished work for.
    """

    def __init__(self, directory: str | Path | None, host: str) -> None:
        self.path = Path(directory) / f"agent-{host}.json" if directory is not None else None
        self._written: int | None = None

    def load(self) -> int:
        if self.path is None:
            return 0
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            after = int(doc["after"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable state file %s: %s", self.path, exc)
            return 0
        self._written = after
        return max(0, after)

    def save(self, after: int) -> None:
        if self.path is None or after == self._written:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".agent-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"after": after}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dirfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        self._written = after
