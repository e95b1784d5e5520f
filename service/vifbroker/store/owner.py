"""One owner per SQLite file: a second broker on the same file is refused at start.

SQLite itself lets several processes write one file, and the engine keeps
their revisions apart (``sqlite_engine``: a batch after another process's
commit goes on after the last revision stored). But each broker's long-polls
wake only on its own commits and its watch cache sees the other's writes only
at its next batch: a destination parked on one broker would wait out its poll
for an upload that landed on the other. Replicas share PostgreSQL; on SQLite
the broker is one process, and this lock says so.

The lock is ``flock`` on ``<database>.lock`` beside the file (never on the
database file itself: closing any descriptor of that file would drop SQLite's
own POSIX locks). The kernel releases it when its holder exits, however it
exits, so a crashed broker leaves nothing to clean up. The file holds the
holder's pid, for the message the next one prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os


class FileInUse(Exception):
    """Another process holds the lock; ``holder`` is its pid as it wrote it ("" if unknown)."""

    def __init__(self, path: str, holder: str) -> None:
        super().__init__(path, holder)
        self.path = path
        self.holder = holder


class OwnerLock:
    """An exclusive, non-blocking ``flock`` on ``path``, from :meth:`take` to :meth:`release`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def take(self) -> None:
        """Hold the lock, or raise :class:`FileInUse` at once (never wait for it)."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise FileInUse(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:  # (a full disk): not held, nothing left open
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let go (the file stays: removing it would race a process about to take it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor releases the flock
