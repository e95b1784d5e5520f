"""The service processes' garbage-collector tuning (in a process of its own: it is global)."""

from __future__ import annotations

import json
import subprocess
import sys

from vifbroker.gctune import OLDER, YOUNG

_PROBE = """
import gc, json
from vifbroker.gctune import tune_for_service
before = gc.get_freeze_count()
junk = [[i] for i in range(1000)]  # alive when tuning: frozen, never walked again
cycle = []; cycle.append(cycle); del cycle  # garbage when tuning: collected first
tune_for_service()
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(),
                  "threshold": gc.get_threshold(), "garbage": gc.collect()}))
"""


def test_what_exists_is_frozen_and_young_collections_come_less_often() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    doc = json.loads(out.stdout)
    assert doc["before"] == 0
    assert doc["frozen"] > 1000  # the startup objects and the probe's own
    assert doc["threshold"] == [YOUNG, OLDER, OLDER]
    assert doc["garbage"] == 0  # the cycle was collected before freezing, not frozen

