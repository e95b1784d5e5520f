"""Safe reading of untrusted XML, and the element helpers the codec reads with.

Every failure is an :class:`XMLCodecError` (a ``ValueError``) whose message
says where: callers turn it into a 4xx without looking inside.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from lxml import etree

from .limits import LimitExceeded

_UINT = re.compile(r"[0-9]{1,19}")
_YES_NO = {"yes": True, "no": False}


class XMLCodecError(ValueError):
    """The document is not well-formed XML, or not a valid ``<interface>`` subset."""


class XMLMalformed(XMLCodecError):
    """Not a readable XML document at all (syntax, encoding, empty, a DOCTYPE)."""


class _NoExternalLoads(etree.Resolver):
    """Answers every external DTD or entity load with an empty document.

    libxml2 opens a DOCTYPE's external subset even with ``load_dtd=False``;
    ``no_network`` only stops URLs, so a local path (a FIFO, /dev/stdin)
    would be read — or block the parser for ever.
    """

    # lxml calls resolve(url, public_id, context); lxml-stubs omit the context.
    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:  # type: ignore[override]
        return self.resolve_string("", context, base_url=None)


def parse_xml(data: bytes | str) -> etree._Element:
    # No file or network access and no entity expansion; a DOCTYPE is refused
    # once parsed, so "billion laughs" and external entities get no chance.
    # libxml2's default (non-huge) limits bound depth and text node size.
    options: dict[str, Any] = {
        "resolve_entities": False,
        "no_network": True,
        "load_dtd": False,
        "huge_tree": False,
        "remove_comments": True,
        "remove_pis": True,
        "collect_ids": False,
    }
    if isinstance(data, str):
        # lxml refuses str input that carries an encoding declaration; the
        # text is already decoded, so the declaration has nothing to say.
        data, options["encoding"] = data.encode("utf-8", "surrogatepass"), "utf-8"
    if not data.strip():
        raise XMLMalformed("empty document")
    parser = etree.XMLParser(**options)
    parser.resolvers.add(_NoExternalLoads())
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise XMLMalformed(f"not well-formed XML: {exc}") from exc
    except (etree.LxmlError, ValueError) as exc:  # e.g. an unknown encoding declaration
        raise XMLMalformed(f"unreadable XML: {exc}") from exc
    if root.getroottree().docinfo.internalDTD is not None:
        raise XMLMalformed("a DOCTYPE is not accepted")
    return root


def children(el: etree._Element, *tags: str, limit: int | None = None) -> list[etree._Element]:
    """The children named ``tags`` (lxml filters in C: other children cost nothing here).

    With ``limit``, LimitExceeded as soon as there are more than that many.
    """
    found: list[etree._Element] = []
    for child in el.iterchildren(*tags):
        found.append(child)
        if limit is not None and len(found) > limit:
            raise LimitExceeded(f"<{tag_name(el)}>: more than {limit} <{'>, <'.join(tags)}>")
    return found


def one(el: etree._Element, tag: str, where: str) -> etree._Element | None:
    found = list(itertools.islice(el.iterchildren(tag), 2))
    if len(found) > 1:
        raise XMLCodecError(f"{where}: more than one <{tag}>")
    return found[0] if found else None


def singletons(el: etree._Element, tags: tuple[str, ...], where: str) -> dict[str, etree._Element]:
    found: dict[str, etree._Element] = {}
    for child in el.iterchildren(*tags):
        if child.tag in found:
            raise XMLCodecError(f"{where}: more than one <{child.tag}>")
        found[str(child.tag)] = child
    return found


def attributes(el: etree._Element, limit: int) -> dict[str, str]:
    """The element's attributes; LimitExceeded past ``limit`` of them.

    Counted first: lxml's ``attrib.items()`` costs time quadratic in the
    number of attributes (30,000 took seconds).
    """
    if len(el.attrib) > limit:
        raise LimitExceeded(f"<{tag_name(el)}>: more than {limit} attributes")
    # Namespaced attributes ("{uri}name") belong to someone else's extension.
    return {str(k): str(v) for k, v in el.attrib.items() if not str(k).startswith("{")}


def required_attr(el: etree._Element, name: str, where: str) -> str:
    value = el.get(name)
    if value is None:
        raise XMLCodecError(f"{where}: <{el.tag}> needs a {name} attribute")
    return value


def uint(value: str, where: str) -> int:
    text = value.strip()
    if not _UINT.fullmatch(text):
        raise XMLCodecError(f"{where}: {value!r} is not an unsigned integer")
    return int(text)


def yes_no(value: str, where: str) -> bool:
    if value not in _YES_NO:
        raise XMLCodecError(f"{where}: {value!r} is neither 'yes' nor 'no'")
    return _YES_NO[value]


def child_text(el: etree._Element, tag: str) -> str | None:
    child = one(el, tag, str(el.tag))
    text = (child.text or "").strip() if child is not None else ""
    return text or None


def tag_name(el: etree._Element) -> str:
    # Keeps "{uri}" so that a namespaced <interface> explains itself.
    return str(el.tag)
