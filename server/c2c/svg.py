"""SVG: accept only well-formed XML with an <svg> root, and store it byte for byte.

The document says SVG is not converted. A stored SVG is made safe where it is served
(gateway/surfaces/storage.py: a sandbox CSP with `default-src 'none'`, nosniff, and as an
attachment), not by rewriting it: a denylist of elements and attributes is always one
trick behind (`<animate attributeName="href" values="java&#9;script:…">`). Parsing is
defusedxml's: standard DOCTYPEs and declared encodings are fine, while entity
declarations (billion laughs) and external references are refused."""

from __future__ import annotations

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException


class SvgRejected(Exception):
    """Not a well-formed SVG document, or one that declares entities."""


def check(data: bytes) -> None:
    """Raise SvgRejected unless `data` is well-formed XML with an <svg> root and no
    entity declarations or external references."""
    try:
        root = SafeElementTree.fromstring(data)
    except (SafeElementTree.ParseError, DefusedXmlException, ValueError) as error:
        raise SvgRejected(str(error)) from None
    if not isinstance(root.tag, str) or root.tag.rsplit("}", 1)[-1].lower() != "svg":
        raise SvgRejected("the root element is not <svg>")
