"""What a file really is: libmagic on the whole buffer, and the one alias table.

libmagic only reads headers, so sniffing alone cannot prove content: raster images are
also fully decoded (images.py) and SVGs parsed (svg.py) before they are accepted.
"""

from __future__ import annotations

import threading

import magic

ALLOWED_MIME_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/svg+xml",
        "application/pdf",
        "text/csv",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "text/plain",
    }
)

#: Declared type → other types libmagic 5.44 reports for genuine files of that type.
#: Measured on real files (tests/test_assets_sniff.py has one per alias). Never
#: application/octet-stream or application/zip: they would admit any binary or any ZIP.
ALIASES: dict[str, frozenset[str]] = {
    # After a BOM, leading whitespace or a comment; the XML is then parsed for an <svg> root.
    "image/svg+xml": frozenset({"text/xml", "text/plain"}),
    # Semicolon- or tab-separated, one column, or one line.
    "text/csv": frozenset({"text/plain"}),
    # Comma-shaped prose.
    "text/plain": frozenset({"text/csv"}),
}

#: Larger than the biggest file we accept, so libmagic reads all of it.
_BYTES_MAX = 26 * 1024 * 1024
_local = threading.local()

# libmagic checks a text file's encoding over its first 64 KiB only (ENCODING_MAX; raising
# it costs about a second per MiB of whitespace), so a text verdict is confirmed here over
# every byte: none of the bytes libmagic's text table calls binary (NUL-ACK, SO-SUB, FS-US,
# DEL), or UTF-16 with a BOM that decodes.
_BINARY_BYTES = bytes([*range(0x00, 0x07), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_TEXT_BYTES = bytes(byte for byte in range(256) if byte not in _BINARY_BYTES)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
BINARY = "application/octet-stream"


def detect(data: bytes) -> str:
    """libmagic's MIME type for the whole buffer (a Magic handle is not thread-safe: one
    per thread)."""
    handle = getattr(_local, "magic", None)
    if handle is None:
        handle = magic.Magic(mime=True)
        handle.setparam(magic.MAGIC_PARAM_BYTES_MAX, _BYTES_MAX)
        _local.magic = handle
    detected: str = handle.from_buffer(data)
    if detected.startswith("text/") and not _is_text(data):
        return BINARY
    return detected


def _is_text(data: bytes) -> bool:
    if data.startswith(_UTF16_BOMS):
        try:
            data.decode("utf-16")
        except UnicodeDecodeError:
            return False
        return True
    return not data.translate(None, _TEXT_BYTES)


def matches(declared: str, detected: str) -> bool:
    return detected == declared or detected in ALIASES.get(declared, frozenset())
