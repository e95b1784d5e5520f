"""Call counting for ``bench/handoff_calls.py``: loaded by every server it starts (this
folder on PYTHONPATH, HANDOFF_CALLS_DIR naming a folder; else it does nothing).

A handoff is counted on the event loop's thread from the first bytes of an
upload that follows a long-poll's request (a round's upload, not a warm-up
one) until the long-poll's answer is made: every Python function entered and
every C function called (``sys.setprofile``), by name. The first such window
is left out (it can hold the uploads that settle the WAL). At exit the counts
and the number of windows go to ``HANDOFF_CALLS_DIR/<pid>.json``. Diagnostic
code: never imported by the broker itself.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

_DIR = os.environ.get("HANDOFF_CALLS_DIR")
_counts: collections.Counter[str] = collections.Counter()
_state = {"on": False, "poll": False, "windows": 0}


def _name(code: Any) -> str:
    path = code.co_filename
    for cut in ("site-packages/", "/service/", "/bench/", "/lib/python3"):
        if cut in path:
            path = path.split(cut, 1)[1]
            break
    return f"{path}:{code.co_qualname}"


def _profile(frame: Any, event: str, arg: Any) -> None:
    if event == "call":
        name = _name(frame.f_code)
        if name.startswith("<string>") and "self" in frame.f_locals:
            name += f" of {type(frame.f_locals['self']).__name__}"  # a dataclass's __init__
        _counts[name] += 1
    elif event == "c_call":
        _counts[f"C {getattr(arg, '__qualname__', repr(arg))}"] += 1


def _install() -> None:
    from aiohttp import web_protocol, web_response

    handler = web_protocol.RequestHandler
    received = handler.data_received

    def data_received(self: Any, data: bytes) -> None:
        if data[:4] == b"GET " and b"/healthz" not in data[:64]:
            _state["poll"] = True  # a round's long-poll: its upload comes next
        elif data[:4] == b"PUT " and _state["poll"] and not _state["on"]:
            _state["poll"] = False
            _state["windows"] += 1
            if _state["windows"] > 1:
                _state["on"] = True
                sys.setprofile(_profile)
        received(self, data)

    handler.data_received = data_received  # type: ignore[method-assign]
    response = web_response.Response
    init = response.__init__

    def answer_made(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        body = bytes(getattr(self, "_body", None) or b"") if _state["on"] else b""
        if body[:11] == b'{"revision"' and b'"items"' in body:
            sys.setprofile(None)  # the long-poll's answer (the floor's, the lean's too)
            _state["on"] = False

    response.__init__ = answer_made  # type: ignore[method-assign]


def _write() -> None:
    if _DIR is not None and _state["windows"] > 1:
        out = {"handoffs": _state["windows"] - 1, "calls": dict(_counts)}
        (Path(_DIR) / f"{os.getpid()}.json").write_text(json.dumps(out))


def _exit(signum: int, frame: Any) -> None:
    sys.exit(0)  # atexit then writes the counts (a server that handles SIGTERM itself wins)


if _DIR:
    _install()
    atexit.register(_write)
    signal.signal(signal.SIGTERM, _exit)
