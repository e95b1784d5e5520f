"""The native driver's JSON-RPC framing parser: any split of a message stream reads back exactly."""

from __future__ import annotations

import json
import random

import ovs.json

from vifbroker.backends.openvswitch.ovsjson import StreamParser, install

ALPHABET = ["a", '"', "\\", "{", "}", "[", "]", ",", ":", "é", "\n", " ", "\\u"]


def document(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 3 or roll < 0.3:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
    if roll < 0.6:
        return [document(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {str(document(rng, 4)): document(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def read(chunks: list[str]) -> list[object]:
    """What ovs.jsonrpc does with a parser: feed what it has, take each finished value."""
    out: list[object] = []
    pending, parser = "", None
    for chunk in chunks:
        pending += chunk
        while pending:
            parser = parser or StreamParser()
            pending = pending[parser.feed(pending) :]
            if not parser.is_done():
                break
            out.append(parser.finish())
            parser = None
    assert parser is None, "a value was left unfinished"
    return out


def test_messages_split_anywhere_read_back_exactly() -> None:
    rng = random.Random(12)
    for n in range(2000):
        docs = [{"id": n, "params": [document(rng)]} for _ in range(3)]
        text = "".join(json.dumps(d, ensure_ascii=rng.random() < 0.5) for d in docs)
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 15))))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert read(chunks) == docs, chunks


def test_bad_input_is_an_error_string_as_ovs_expects() -> None:
    parser = StreamParser()
    parser.feed('{"a": tru}')
    assert parser.is_done()
    assert isinstance(parser.finish(), str)
    unfinished = StreamParser()
    unfinished.feed('{"a": "b')
    assert not unfinished.is_done()
    assert isinstance(unfinished.finish(), str)


def test_install_replaces_only_the_python_parser() -> None:
    installed = install()
    if ovs.json.PARSER == ovs.json.PARSER_C:
        assert installed is False
    else:
        assert ovs.json.Parser is StreamParser
