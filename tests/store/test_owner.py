"""The SQLite file's owner lock: refused while held, free once its holder is gone, however."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vifbroker.store.owner import FileInUse, OwnerLock

HOLD = """
import sys
from vifbroker.store.owner import OwnerLock
OwnerLock(sys.argv[1]).take()
print("held", flush=True)
sys.stdin.read()  # until the test kills it
"""


def test_a_killed_holder_leaves_the_lock_free_and_its_pid_was_named(tmp_path: Path) -> None:
    path = str(tmp_path / "vifbroker.db.lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"  # a line, not a sleep
        with pytest.raises(FileInUse) as refused:
            OwnerLock(path).take()
        assert refused.value.holder == str(holder.pid)
    finally:
        holder.kill()  # SIGKILL: no cleanup of its own runs
        holder.wait(30)
    mine = OwnerLock(path)
    mine.take()
    try:
        assert Path(path).read_text() == f"{os.getpid()}\n"
        with pytest.raises(FileInUse):
            OwnerLock(path).take()  # another open of the file, even in this process
    finally:
        mine.release()
    assert Path(path).read_text() == ""  # released: no stale pid for the next message
    again = OwnerLock(path)
    again.take()
    again.release()
