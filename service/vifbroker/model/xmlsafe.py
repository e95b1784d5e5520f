"""String types that guarantee a model value can be written as XML and read back.

JSON can carry strings that XML 1.0 cannot (control characters, U+FFFE, lone
surrogates) and keys that are no XML attribute name. Validating them where a
record enters — whatever its encoding — is what lets every stored record be
served as XML later instead of failing at read time.

Port data is the exception: it is opaque, so it may hold any Unicode scalar
value; the codec base64-encodes it when it is not XML-safe. Only lone
surrogates are refused there, because they have no UTF-8 form at all (and
neither digest nor OVS could carry them).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# XML 1.0 "Char" production, minus nothing: what may appear in text or attributes.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# An NCName restricted to ASCII (every libvirt attribute name is ASCII); no
# colon, so it can never name a namespace or a prefixed attribute.
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,127}")


def is_xml_text(value: str) -> bool:
    """True when ``value`` consists only of characters XML 1.0 allows."""
    return _NOT_XML_CHAR.search(value) is None


def check_xml_text(value: str) -> str:
    bad = _NOT_XML_CHAR.search(value)
    if bad is not None:
        raise ValueError(
            f"character U+{ord(bad.group()):04X} at offset {bad.start()} cannot appear in XML"
        )
    return value


def check_xml_name(value: str) -> str:
    if not _XML_NAME.fullmatch(value):
        raise ValueError(f"not an XML attribute name: {value!r}")
    # "xml…" names are reserved: an attribute called xmlns would silently
    # change the element's namespace when the XML is read back.
    if value[:3].lower() == "xml":
        raise ValueError(f"reserved XML name: {value!r}")
    return value


def check_unicode_scalars(value: str) -> str:
    bad = _SURROGATE.search(value)
    if bad is not None:
        raise ValueError(f"lone surrogate U+{ord(bad.group()):04X} at offset {bad.start()}")
    return value


#: Text that can be an XML attribute value or element text as it is.
XmlText = Annotated[str, AfterValidator(check_xml_text)]
#: An attribute name the codec can write (libvirt's spelling, e.g. ``portgroup``).
XmlName = Annotated[str, AfterValidator(check_xml_name)]
#: Opaque port data: any Unicode text that has a UTF-8 encoding.
PortDataText = Annotated[str, AfterValidator(check_unicode_scalars)]
