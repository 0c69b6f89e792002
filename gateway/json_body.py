"""A JSON request body in one copy: long plain strings (base64 file contents) are not
copied out of the body while it is parsed.

`json.loads` would hold the body, its text and every parsed string at once: three
copies of a body that is mostly one base64 string. Here each string of at least
`LONG_STRING` printable ASCII characters without escapes is cut out of a small skeleton
of the body, which is parsed instead; such a string then comes back as a `RawText` (a
place in the body) where the caller may take it unread, else as a `str`. Whatever the
skeleton cannot prove equal to the body (it fails to parse, or a cut string is not a
whole string value) is parsed from the whole body, so answers and error positions are
exactly `json.loads`'s.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

#: Strings at least this long are left in the body.
LONG_STRING = 64 * 1024
#: A long run of printable ASCII but `"` and `\` between two quotes.
_LONG_PLAIN = re.compile(rb'"([\x20\x21\x23-\x5b\x5d-\x7e]{%d,})"' % LONG_STRING)

#: A path in a document: keys and list indices from the root.
Path = tuple[str | int, ...]


class RawText:
    """A JSON string still in the request body: printable ASCII, no escapes, so its bytes
    are its text."""

    __slots__ = ("_body", "_end", "_start")

    def __init__(self, body: bytearray, start: int, end: int) -> None:
        self._body, self._start, self._end = body, start, end

    def text(self) -> str:
        return self._body[self._start : self._end].decode("ascii")

    def base64_chunks(self, size: int) -> Iterator[bytes]:
        """The bytes the text means as C2C content, as gateway.surfaces.c2c.decode_content
        reads it whole (base64, optionally a data URI: only what follows the last comma;
        spaces ignored), about `size` decoded bytes at a time; raises ValueError where
        decode_content would, and only then (once the chunks before are out: to refuse
        before sending, read them all first). One chunk of text is copied at a time."""
        start, end = self._start, self._end
        if self._body.startswith(b"data:", start, end):
            start = self._body.rfind(b",", start, end) + 1 or start
        body, window, carry = self._body, size // 3 * 4, bytearray()
        for position in range(start, end, window):
            stop = min(position + window, end)
            piece = body[position:stop]
            if b" " in piece:
                piece = piece.replace(b" ", b"")
            if carry:
                piece[:0] = carry
            if stop >= end:
                carry = piece
                break
            # Keep the last 4 digits back: padding is valid only at the very end.
            cut = max(0, (len(piece) - 4) // 4 * 4)
            if piece.find(b"=", 0, cut) >= 0:
                raise ValueError("invalid base64")
            try:
                chunk = binascii.a2b_base64(memoryview(piece)[:cut], strict_mode=True)
            except binascii.Error:
                raise ValueError("invalid base64") from None
            carry = piece[cut:]
            if chunk:
                yield chunk
        try:
            yield base64.b64decode(carry, validate=True)
        except binascii.Error as error:
            raise ValueError("invalid base64") from error


def parse(
    body: bytearray,
    loads: Callable[[bytes | bytearray], Any],
    keep_raw: Callable[[Path], bool],
) -> Any:
    """The document `loads` reads from `body`, long plain strings where `keep_raw(path)`
    says so as RawText (in object values and array items; never keys)."""
    cuts = [match.span(1) for match in _LONG_PLAIN.finditer(body)]
    if not cuts:
        return loads(body)
    nonce = secrets.token_hex(8)
    marks = {f"crmgate-raw-{nonce}-{index}": span for index, span in enumerate(cuts)}
    skeleton, position = bytearray(), 0
    for mark, (start, end) in marks.items():
        skeleton += body[position:start]
        skeleton += mark.encode()
        position = end
    skeleton += body[position:]
    try:
        document = loads(skeleton)
    except Exception:  # the whole body will say what is wrong, and where
        return loads(body)
    del skeleton
    restored: list[str] = []
    document = _restore(document, (), body, marks, keep_raw, restored)
    if sorted(restored) != sorted(marks):
        # A mark landed inside a longer string or a key: not the string it stands for.
        return loads(body)
    return document


def _restore(
    value: Any,
    path: Path,
    body: bytearray,
    marks: dict[str, tuple[int, int]],
    keep_raw: Callable[[Path], bool],
    restored: list[str],
) -> Any:
    """`value` with each mark replaced by its string (a module function, not a closure:
    a recursive closure is a reference cycle, which would keep the body alive until the
    garbage collector runs)."""
    if isinstance(value, str) and value in marks:
        restored.append(value)
        raw = RawText(body, *marks[value])
        return raw if keep_raw(path) else raw.text()
    if isinstance(value, dict):
        return {
            key: _restore(item, (*path, key), body, marks, keep_raw, restored)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _restore(item, (*path, index), body, marks, keep_raw, restored)
            for index, item in enumerate(value)
        ]
    return value
