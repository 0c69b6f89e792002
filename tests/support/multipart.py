"""Multipart/form-data bodies generated as they are sent, so a test can upload a file far
larger than it holds in memory (and pause midway through it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

BOUNDARY = "crmgate-test-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


class streamed_form:
    """The fields, then a `file` part of `megabytes` copies of the 1 MiB `block`;
    `before_block(index)` runs before each copy is sent. It has a length, so requests
    sends Content-Length as S3 requires (a bare generator would go chunked)."""

    def __init__(
        self,
        fields: dict[str, str],
        megabytes: int,
        block: bytes,
        before_block: Callable[[int], None] = lambda index: None,
    ) -> None:
        self._head = (
            b"".join(
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                for name, value in fields.items()
            )
            + (
                f"--{BOUNDARY}\r\n"
                'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        )
        self._tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self._megabytes, self._block, self._before_block = megabytes, block, before_block

    def __len__(self) -> int:
        return len(self._head) + self._megabytes * len(self._block) + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        for index in range(self._megabytes):
            self._before_block(index)
            yield self._block
        yield self._tail
