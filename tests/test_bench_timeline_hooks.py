"""``bench/handoff_timeline.py``'s hooks still fit the broker's code.

The hooks wrap the broker's functions by module and name. A rename in the
service would otherwise show only when someone next times a handoff; here it
fails the suite, naming the hook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HOOKS = Path(__file__).resolve().parent.parent / "bench" / "timeline_hooks"

# Run in a fresh interpreter with the hooks on its path, as a timed broker starts.
PROBE = """
import inspect
from vifbroker.server import connections, domains, hosts
from vifbroker.store.sqlite_engine import Engine
hooked = [connections._Handler.data_received, domains.put_interface, hosts.inbox,
          Engine._start, Engine._commit, Engine._committed]
print(all(hasattr(f, "__wrapped__") for f in hooked))
print(inspect.iscoroutinefunction(domains.put_interface))
"""


def _probe(notes: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "HANDOFF_TIMELINE_FILE": str(notes)}
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )


def test_every_hook_finds_its_function(tmp_path: Path) -> None:
    notes = tmp_path / "timeline.jsonl"
    done = _probe(notes)
    errors = [json.loads(line) for line in notes.read_text().splitlines()] if notes.exists() else []
    assert errors == [], errors  # a hook that did not fit is written here, by name
    assert done.returncode == 0, done.stderr
    # hooked; an async handler stays a coroutine function (aiohttp awaits it)
    assert done.stdout.split() == ["True", "True"], done.stdout + done.stderr


def test_without_a_notes_file_nothing_is_hooked(tmp_path: Path) -> None:
    path = os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if k != "HANDOFF_TIMELINE_FILE"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**env, "PYTHONPATH": path},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "False"
