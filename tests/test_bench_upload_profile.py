"""``bench/upload_profile.py`` sorts py-spy's samples into the broker's layers.

Its layers are found by the names of the broker's functions in sampled stacks:
a rename in the service would otherwise only show as a layer that is never
seen, its time counted as the event loop's. Here every name must still be a
function of the module its file names, and a stack goes to its deepest layer.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def profile() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("upload_profile")
    finally:
        sys.path.remove(str(BENCH))


def _module_of(path: str) -> str:
    """``store/rows.py`` -> ``vifbroker.store.rows``; ``aiohttp/x.py`` -> ``aiohttp.x``."""
    dotted = path.removesuffix(".py").replace("/", ".")
    return dotted if dotted.startswith("aiohttp.") else f"vifbroker.{dotted}"


def test_every_layer_names_a_function_that_exists(profile: ModuleType) -> None:
    missing = []
    for layer, marker in profile.LAYERS:
        qualname, _, path = marker.partition(" (")
        if not path:  # a bare name (data_received): any class's
            continue
        owner: object = importlib.import_module(_module_of(path))
        for part in qualname.split(".<locals>.")[0].split("."):
            owner = getattr(owner, part, None)
        if not callable(owner):
            missing.append(f"{layer}: {marker}")
    assert missing == []


def test_a_stack_goes_to_its_deepest_layer(profile: ModuleType) -> None:
    raw = "\n".join([
        "thread (1): MainThread;run (asyncio/runners.py:118);"
        "RequestHandler._handle_request (aiohttp/web_protocol.py:477);"
        "_front.<locals>.front (server/middleware.py:108);"
        "put_interface (server/domains.py:77);decode_interfaces (server/bodies.py:90);"
        "json_model (server/bodies.py:63) 3",
        "thread (1): MainThread;run (asyncio/runners.py:118);"
        "RequestHandler._handle_request (aiohttp/web_protocol.py:477);"
        "_front.<locals>.front (server/middleware.py:108) 2",
        "thread (1): MainThread;run (asyncio/runners.py:118) 4",
        "thread (2): vifbroker-sqlite-write;Hop._serve (store/hop.py:59) 5",
    ])  # fmt: skip
    counts = profile.tally(raw)
    assert counts == {
        "handler: body decoded and validated": 3,
        "middleware: ids, metrics, headers": 2,
        profile.OTHER: 4,
        profile.WRITER: 5,
    }
