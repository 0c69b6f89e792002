"""The C2C upload rules: what a request must look like, and what each file must be.

Violations carry a message key and parameters, never text, so the servicer can word them
in the caller's language; fields are Laravel's dotted paths (`files.0.content`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol

from server.c2c import images, sniff, svg

MAX_FILES = 10
MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_TOTAL_BYTES = 50 * 1024 * 1024
MAX_FILENAME = 255
MAX_ALT = 255
MAX_DESCRIPTION = 1000
RASTER_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Violation:
    field: str
    key: str
    params: dict[str, object] = field(default_factory=dict)


class FileFacts(Protocol):
    """What the request checks read of a file: everything but its bytes (a streamed
    upload's manifest says the size before the bytes arrive)."""

    @property
    def filename(self) -> str: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def alt(self) -> str: ...
    @property
    def description(self) -> str: ...


@dataclass(frozen=True)
class FileInput:
    filename: str
    mime_type: str
    content: bytes
    alt: str = ""
    description: str = ""

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True)
class PreparedFile:
    """A file as it will be stored."""

    name: str
    mime_type: str
    data: bytes
    sha256: str
    alt: str
    description: str

    @property
    def type(self) -> str:
        return "image" if self.mime_type.startswith("image/") else "file"


def base_name(filename: str) -> str:
    """The last component of a path written with / or \\ (never used as a path)."""
    return re.split(r"[\\/]", filename.strip())[-1].strip()


def check_request(email: str, files: Sequence[FileFacts]) -> list[Violation]:
    """Everything that can be checked without reading file contents."""
    violations: list[Violation] = []
    if not email.strip():
        violations.append(Violation("email", "required"))
    elif len(email.strip()) > 320 or not _EMAIL.fullmatch(email.strip()):
        violations.append(Violation("email", "email"))
    if not files:
        violations.append(Violation("files", "required"))
    elif len(files) > MAX_FILES:
        violations.append(Violation("files", "max_items", {"max": MAX_FILES}))
    total = 0
    for index, upload in enumerate(files):
        prefix = f"files.{index}"
        if not upload.filename.strip():
            violations.append(Violation(f"{prefix}.filename", "required"))
        elif len(upload.filename) > MAX_FILENAME:
            violations.append(Violation(f"{prefix}.filename", "max_chars", {"max": MAX_FILENAME}))
        elif base_name(upload.filename) in ("", ".", "..") or _CONTROL.search(upload.filename):
            violations.append(Violation(f"{prefix}.filename", "filename"))
        if not upload.mime_type:
            violations.append(Violation(f"{prefix}.mime_type", "required"))
        elif upload.mime_type not in sniff.ALLOWED_MIME_TYPES:
            violations.append(Violation(f"{prefix}.mime_type", "mime_allowed"))
        if not upload.size:
            violations.append(Violation(f"{prefix}.content", "required"))
        elif upload.size > MAX_FILE_BYTES:
            violations.append(Violation(f"{prefix}.content", "max_file", {"max": MAX_FILE_BYTES}))
        if len(upload.alt) > MAX_ALT:
            violations.append(Violation(f"{prefix}.alt", "max_chars", {"max": MAX_ALT}))
        if len(upload.description) > MAX_DESCRIPTION:
            violations.append(
                Violation(f"{prefix}.description", "max_chars", {"max": MAX_DESCRIPTION})
            )
        total += upload.size
    if total > MAX_TOTAL_BYTES:
        violations.append(Violation("files", "max_total", {"max": MAX_TOTAL_BYTES}))
    return violations


def prepare(index: int, upload: FileInput) -> PreparedFile | Violation:
    """Prove the content is what it claims and turn it into what is stored: rasters
    become WebP; everything else, SVGs (once checked) included, is kept byte for byte.
    CPU-heavy: run it off the event loop."""
    field_name = f"files.{index}.content"
    declared = upload.mime_type
    detected = sniff.detect(upload.content)
    if not sniff.matches(declared, detected):
        return Violation(field_name, "mime_mismatch", {"detected": detected, "declared": declared})
    name = base_name(upload.filename)
    data, stored_type = upload.content, declared
    try:
        if declared in RASTER_TYPES:
            data = images.to_webp(images.open_verified(upload.content, declared))
            name, stored_type = str(PurePosixPath(name).with_suffix(".webp")), "image/webp"
        elif declared == "image/gif":
            images.open_verified(upload.content, declared)
        elif declared == "image/svg+xml":
            svg.check(upload.content)
    except images.ImageRejected as rejected:
        return Violation(field_name, rejected.reason, {"declared": declared})
    except svg.SvgRejected:
        return Violation(field_name, "undecodable", {"declared": declared})
    return PreparedFile(
        name=name,
        mime_type=stored_type,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        alt=upload.alt,
        description=upload.description,
    )
