"""SVG: accept only well-formed XML with an <svg> root, and store it with everything
that could run or fetch removed, so a stored SVG can never become stored XSS."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"

#: Elements dropped with everything inside them.
_DROPPED = {"script", "foreignobject", "iframe", "embed", "object", "style", "handler", "listener"}
_URL = re.compile(r"url\s*\(\s*['\"]?\s*(?!#)", re.IGNORECASE)
_DANGEROUS_TEXT = re.compile(r"javascript:|expression\s*\(|@import", re.IGNORECASE)

ElementTree.register_namespace("", SVG_NS)
ElementTree.register_namespace("xlink", XLINK_NS)


class SvgRejected(Exception):
    """Not a well-formed SVG document."""


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1].lower()


def sanitize(data: bytes) -> bytes:
    """The SVG without scripts, event handlers, styles, foreign content or external
    references; raises SvgRejected unless `data` is XML with an <svg> root."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SvgRejected("not UTF-8") from None
    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise SvgRejected("DTDs and entities are not accepted")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        raise SvgRejected("not well-formed XML") from None
    if _local(root.tag) != "svg":
        raise SvgRejected("the root element is not <svg>")
    _clean(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def _clean(element: ElementTree.Element) -> None:
    for child in list(element):
        if not isinstance(child.tag, str) or _local(child.tag) in _DROPPED:
            element.remove(child)
        else:
            _clean(child)
    for name, value in list(element.attrib.items()):
        local = _local(name)
        if (
            local.startswith("on")
            or (local == "href" and not value.strip().startswith("#"))
            or _URL.search(value)
            or _DANGEROUS_TEXT.search(value)
        ):
            del element.attrib[name]
