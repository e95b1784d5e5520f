"""A fast JSON-RPC stream parser for the ``ovs`` package, built on the stdlib ``json``.

The ``ovs`` package parses every OVSDB message with ``ovs.json.Parser``, which
is a C extension where the package was built against libopenvswitch (distro
packages) and a character-by-character Python state machine elsewhere (the
PyPI sdist on a host without OVS headers). Measured here, the Python one is
~4 µs a byte: an update carrying 64 rows of 256-byte port data costs ~13 ms
to parse, an evacuation's 2,000 rows seconds.

:class:`StreamParser` keeps the parser's contract (``feed`` returns how much
it consumed and stops at the end of one top-level value; ``is_done``;
``finish`` returns the value or an error string) but only *scans* for the end
of the value, jumping between the few characters that matter with a regular
expression, then hands the whole text to ``json.loads``. OVSDB's JSON-RPC
puts no delimiter between messages, hence the scan.

:func:`install` puts it in place when (and only when) the C parser is absent.
"""

from __future__ import annotations

import json
import re
from typing import Any

import ovs.json

# Outside strings only brackets and quotes matter; inside, quotes and escapes.
_OUTSIDE = re.compile(r'[{}\[\]"]')
_INSIDE = re.compile(r'["\\]')
# The rest of a string that ends in this chunk, escapes and all, in one match.
_STRING_REST = re.compile(r'(?:[^"\\]|\\.)*+"', re.S)
_OPEN = frozenset("{[")


class StreamParser:
    """Finds one top-level JSON object or array in a stream of text chunks."""

    def __init__(self, check_trailer: bool = False) -> None:
        self.check_trailer = check_trailer
        self._chunks: list[str] = []
        self._depth = 0
        self._in_string = False
        self._escape = False  # a backslash ended the previous chunk
        self._started = False
        self._done = False

    def feed(self, s: str) -> int:
        """Consume ``s`` up to the end of the value; return how many characters were used."""
        if self._done:
            return 0
        i = 0
        n = len(s)
        if self._escape and n:
            self._escape = False
            i = 1
        while i < n:
            if self._in_string:
                whole = _STRING_REST.match(s, i)
                if whole is not None:
                    self._in_string = False
                    i = whole.end()
                    continue
                m = _INSIDE.search(s, i)
                if m is None:
                    i = n
                    break
                if m.group() == "\\":
                    if m.end() >= n:
                        self._escape = True
                        i = n
                        break
                    i = m.end() + 1
                    continue
                self._in_string = False
                i = m.end()
                continue
            if not self._started:
                rest = s[i:]
                i += len(rest) - len(rest.lstrip())
                if i >= n:
                    break
                if s[i] not in _OPEN:
                    # Not a message this parser can frame: let json.loads say why.
                    self._chunks.append(s[i:])
                    self._done = True
                    return n
                self._started = True
            m = _OUTSIDE.search(s, i)
            if m is None:
                i = n
                break
            ch = m.group()
            i = m.end()
            if ch == '"':
                self._in_string = True
            elif ch in _OPEN:
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    self._chunks.append(s[:i])
                    self._done = True
                    return i
        self._chunks.append(s[:i])
        return i

    def is_done(self) -> bool:
        return self._done

    def finish(self) -> Any:
        """The parsed value, or (as ``ovs.json.Parser`` does) an error message string."""
        text = "".join(self._chunks)
        if not self._done:
            return "unexpected end of input" if text.strip() else "empty input stream"
        try:
            return json.loads(text)
        except ValueError as exc:
            return f"invalid JSON: {exc}"


def install() -> bool:
    """Use :class:`StreamParser` for every OVSDB connection unless the C parser is there.

    Returns whether it was installed. ``ovs.jsonrpc`` creates its parser as
    ``ovs.json.Parser()`` at every message, so replacing that name is the one
    way in; it changes nothing else in the package.
    """
    if ovs.json.PARSER == ovs.json.PARSER_C:
        return False
    ovs.json.Parser = StreamParser
    return True
