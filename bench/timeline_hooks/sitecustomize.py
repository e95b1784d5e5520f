"""Timing hooks for ``bench/handoff_timeline.py``: loaded by a broker started with this
folder on PYTHONPATH and HANDOFF_TIMELINE_FILE naming a file (else it does nothing).

Each hook wraps one function of the broker (by module and name, so a renamed
one fails loudly here rather than measuring nothing) and notes, for the
handoff under way, when the function was entered or left, in microseconds
after the upload's first bytes reached the broker. A handoff's notes are
appended to the file as one JSON line once its long-poll's answer is sent
(aiohttp's ``finish_response``: the long-poll's is the first after the upload,
which is answered after it).
Only the first note of each name counts per handoff. Diagnostic code: never
imported by the broker itself.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import inspect
import json
import os
import time
from collections.abc import Callable
from typing import Any

_OUT = os.environ.get("HANDOFF_TIMELINE_FILE")
_now = time.perf_counter
_notes: dict[str, float] = {}
_done: list[dict[str, float]] = []


def _note(name: str) -> None:
    if "0 upload in" in _notes:
        _notes.setdefault(name, _now())


def _flush() -> None:
    start = _notes.pop("0 upload in", None)
    if start is None or _OUT is None:
        return
    _done.append({k: round((v - start) * 1e6, 1) for k, v in _notes.items()})
    _notes.clear()
    if len(_done) >= 50:
        _write()


def _write() -> None:
    if _done and _OUT is not None:
        with open(_OUT, "a", encoding="utf-8") as out:
            out.writelines(json.dumps(d) + "\n" for d in _done)
        _done.clear()


def _hook(
    module: str, qualname: str, enter: str | None = None, leave: str | None = None,
    before: Callable[..., None] | None = None, then: Callable[[], None] | None = None,
) -> None:  # fmt: skip
    """Wrap ``module.qualname`` (a function or a method) to note ``enter``/``leave``;
    ``before`` gets its arguments first, ``then`` runs after ``leave`` is noted."""
    owner: Any = importlib.import_module(module)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    func = getattr(owner, name)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if before is not None:
                before(*args)
            if enter:
                _note(enter)
            result = await func(*args, **kwargs)
            if leave:
                _note(leave)
                if then is not None:
                    then()
            return result

    else:

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if before is not None:
                before(*args)
            if enter:
                _note(enter)
            result = func(*args, **kwargs)
            if leave:
                _note(leave)
                if then is not None:
                    then()
            return result

    static = isinstance(inspect.getattr_static(owner, name), staticmethod)
    setattr(owner, name, staticmethod(wrapper) if static else wrapper)


def _upload_bytes(handler: Any, data: bytes) -> None:
    """An upload's first bytes begin a handoff's notes."""
    if data[:4] == b"PUT ":
        _notes.clear()
        _notes["0 upload in"] = _now()


def _install() -> None:
    c, e = "vifbroker.server.connections", "vifbroker.store.sqlite_engine"
    u, g = "vifbroker.store.sqlite_uploads", "vifbroker.store.sqlite_group"
    _hook(c, "_Handler.data_received", before=_upload_bytes, leave="1 upload parsed")
    _hook("aiohttp.web_protocol", "RequestHandler._handle_request", enter="2 request handled")
    _hook("vifbroker.server.middleware", "guard", enter="3 middleware", leave="4 authenticated")
    _hook("vifbroker.server.domains", "put_interface", enter="5 upload handler")
    _hook("vifbroker.server.domains", "read_body", enter="6 uploader checked")
    _hook("vifbroker.server.bodies", "decode_interfaces", enter="7 body read",
          leave="8 body decoded")  # fmt: skip
    _hook("vifbroker.store.frontend", "RoutedWrites.put_interfaces", enter="9 store called")
    _hook(e, "Engine._start", enter="10 batch begins")
    _hook(e, "Engine._begin_now", leave="11 transaction begun")
    _hook(u, "upload_group", enter="12 group runs", leave="19 group planned and written")
    _hook(u, "_held_uploads", leave="13 rows held")
    _hook("vifbroker.store.rows", "split_interface", enter="14 interface split begins",
          leave="15 interface split")  # fmt: skip
    _hook("vifbroker.store.rows", "take_upload", leave="16 upload planned")
    _hook(u, "_write_vifs", leave="17 vif written")
    _hook(g, "settle", leave="18 migration written")
    _hook(e, "Engine._try_batch", leave="20 batch statements done")
    _hook(e, "Engine._commit", enter="21 COMMIT on the thread", leave="22 COMMIT done")
    _hook(e, "Engine._committed", enter="23 back on the loop")
    _hook("vifbroker.store.sqlite", "SQLiteStore._committed", leave="24 cache applied")
    _hook("vifbroker.store.batching", "WriteQueue.answer", leave="25 published, writers answered")
    _hook("vifbroker.store.hub", "ChangeHub.wait", leave="26 long-poll resumed")
    _hook("vifbroker.store.sqlite_cache", "WatchCache.select", leave="27 cache selected")
    _hook("vifbroker.store.sqlite", "SQLiteStore.inbox_page", leave="28 page built")
    _hook("vifbroker.server.hosts", "inbox", leave="29 answer built")
    _hook("aiohttp.web_protocol", "RequestHandler.finish_response", leave="30 answer sent",
          then=_flush_answered)  # fmt: skip


def _flush_answered() -> None:
    """Flush once a long-poll's answer was built: an upload answered without one
    (the WAL-settling uploads before the rounds) leaves no line."""
    if "29 answer built" in _notes:
        _flush()
    else:
        _notes.pop("30 answer sent", None)


if _OUT:
    try:
        _install()
    except Exception as exc:  # a hook that no longer fits the broker's code: say which
        with open(_OUT, "a", encoding="utf-8") as out:
            out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        raise
    atexit.register(_write)
