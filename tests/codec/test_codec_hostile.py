"""Hostile and broken input: always XMLCodecError (the API's 4xx), never anything else."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
from codec_samples import EXAMPLE, STRICT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vifbroker.model.codec import (
    LimitExceeded,
    Limits,
    XMLCodecError,
    parse_document,
    parse_interface,
)

FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=STRICT,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"]><interface><mac address='52:54:00:00:00:01'/>"
    + b"<virtualport><portdata>&lol9;</portdata></virtualport></interface>"
)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (BILLION_LAUGHS, "DOCTYPE|amplification"),
        (
            b'<!DOCTYPE i [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<interface><mac address='52:54:00:00:00:01'/>"
            b"<virtualport><portdata>&x;</portdata></virtualport></interface>",
            "DOCTYPE",
        ),
        (
            b'<!DOCTYPE interface SYSTEM "http://127.0.0.1:9/x.dtd">'
            b"<interface><mac address='52:54:00:00:00:01'/></interface>",
            "DOCTYPE",
        ),
        (b"", "empty document"),
        (b"  \n\t ", "empty document"),
        (b"<interface><mac address='52:54:00:00:00:01'/>", "not well-formed"),
        (b"<interface>\x00</interface>", "not well-formed"),
        (b"\xff\xfe\x00<", "not well-formed|unreadable"),
        (b"<interface><mac address='\xe9'/></interface>", "not well-formed"),
        (
            b"<?xml version='1.0' encoding='no-such-codec'?><interface/>",
            "not well-formed|unreadable",
        ),
        (b"<a:interface/>", "not well-formed|expected"),
        (b"just text", "not well-formed"),
    ],
)
def test_broken_or_dangerous_documents(doc: bytes, message: str) -> None:
    with pytest.raises(XMLCodecError, match=message) as info:
        parse_document(doc)
    assert "root:" not in str(info.value)  # nothing of /etc/passwd leaks into the message


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE interface SYSTEM "{path}">',
        '<!DOCTYPE interface [<!ENTITY % ext SYSTEM "{path}"> %ext;]>',
        '<!DOCTYPE interface [<!ENTITY ext SYSTEM "file://{path}">]>',
    ],
)
def test_external_subsets_and_entities_are_never_opened(tmp_path: Path, doctype: str) -> None:
    # libxml2 opens a DOCTYPE's external subset even with load_dtd=False; on a
    # FIFO (or /dev/stdin) that open blocks for ever. A FIFO makes that visible.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    doc = doctype.format(path=fifo) + (
        "<interface><mac address='52:54:00:00:00:01'/>"
        "<virtualport><portdata>&ext;</portdata></virtualport></interface>"
        if "ENTITY ext" in doctype
        else "<interface><mac address='52:54:00:00:00:01'/></interface>"
    )
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            parse_document(doc)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        # Release the blocked open() so the thread ends, then fail.
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        worker.join(timeout=30)
        pytest.fail("the parser opened the FIFO named in the DOCTYPE")
    assert len(outcome) == 1 and isinstance(outcome[0], XMLCodecError), outcome
    assert "DOCTYPE" in str(outcome[0])


def test_local_file_content_never_reaches_the_result(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET")
    doc = (
        f'<!DOCTYPE interface [<!ENTITY ext SYSTEM "file://{secret}">]>'
        "<interface><mac address='52:54:00:00:00:01'/>"
        "<virtualport><portdata>&ext;</portdata></virtualport></interface>"
    )
    with pytest.raises(XMLCodecError, match="DOCTYPE") as info:
        parse_document(doc)
    assert "TOPSECRET" not in str(info.value)


def test_str_with_lone_surrogate_is_a_codec_error() -> None:
    with pytest.raises(XMLCodecError):
        parse_interface("<interface><mac address='52:54:00:00:00:01'/>\ud800</interface>")


def test_nesting_beyond_libxml2s_limit_is_a_codec_error_not_a_crash() -> None:
    deep = "<x>" * 100_000 + "</x>" * 100_000
    with pytest.raises(XMLCodecError):
        parse_document(f"<domain><devices>{deep}</devices></domain>")


def test_large_portdata_is_read_whole_or_refused() -> None:
    # The cap is the caller's policy (Limits, from Settings.max_portdata_bytes);
    # the codec must never truncate what it was given.
    big = "x" * (4 * 1024 * 1024)
    doc = EXAMPLE.replace("any UTF-8 text, XML-escaped", big)
    assert parse_interface(doc, Limits(max_portdata_bytes=len(big))).portdata == big
    with pytest.raises(LimitExceeded, match="port data"):
        parse_interface(doc)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(XMLCodecError, LimitExceeded):
        parse_document(data)


@FUZZ
@given(
    st.integers(0, len(EXAMPLE)),
    st.integers(0, 40),
    st.text(alphabet="<>/='\"&;# x0-9aZ\n\x00\x01\u00e9", max_size=12),
)
def test_mangled_example(at: int, cut: int, insert: str) -> None:
    doc = EXAMPLE[:at] + insert + EXAMPLE[at + cut :]
    with contextlib.suppress(XMLCodecError, LimitExceeded):
        parse_interface(doc)


SLOTS = [
    "<mac address='{}'/>",
    "<mac address='52:54:00:00:00:01'/><vlan trunk='{}'><tag id='{}'/></vlan>",
    "<mac address='52:54:00:00:00:01'/><mtu size='{}'/>",
    "<mac address='52:54:00:00:00:01'/><link state='{}'/>",
    "<mac address='52:54:00:00:00:01'/><bandwidth><inbound average='{}'/></bandwidth>",
    "<mac address='52:54:00:00:00:01'/>"
    "<virtualport><portdata encoding='{}'>{}</portdata></virtualport>",
    "<mac address='52:54:00:00:00:01'/><source {}='{}'/>",
]


@FUZZ
@given(st.sampled_from(SLOTS), st.lists(st.text(max_size=20), min_size=2, max_size=2))
def test_arbitrary_attribute_values(slot: str, values: list[str]) -> None:
    from xml.sax.saxutils import quoteattr

    # quoteattr adds its own quotes; strip them so the slot's quotes frame the value
    escaped = [quoteattr(v)[1:-1].replace("'", "&apos;") for v in values]
    doc = f"<interface type='bridge'>{slot.format(*escaped)}</interface>"
    with contextlib.suppress(XMLCodecError, LimitExceeded):
        parse_interface(doc)
