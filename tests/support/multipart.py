"""Multipart/form-data bodies generated as they are sent, so a test can upload a file far
larger than it holds in memory (and pause midway through it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

BOUNDARY = "crmgate-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def streamed_form(
    fields: dict[str, str],
    megabytes: int,
    block: bytes,
    before_block: Callable[[int], None] = lambda index: None,
) -> Iterator[bytes]:
    """The fields, then a `file` part of `megabytes` copies of the 1 MiB `block`;
    `before_block(index)` runs before each copy is sent."""
    for name, value in fields.items():
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    yield (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for index in range(megabytes):
        before_block(index)
        yield block
    yield f"\r\n--{BOUNDARY}--\r\n".encode()
