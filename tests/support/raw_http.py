"""HTTP/1.1 over raw sockets, for requests no HTTP client would send (invalid UTF-8 in a
header, a head too long, a body announced and never sent) and for watching a connection
the server closes."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names lowercased
    body: Any  # parsed JSON, else bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def connect(http_url: str, timeout: float = 30) -> socket.socket:
    host, port = http_url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def exchange(http_url: str, data: bytes) -> Answer:
    """Send `data` as it is, then read until the server closes the connection."""
    with connect(http_url) as connection:
        connection.sendall(data)
        return read_answer(connection)


def read_answer(connection: socket.socket) -> Answer:
    """One response: its head, then its body by Content-Length (or to the close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    length = int(headers.get("content-length", "-1"))
    while length < 0 or len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    parsed = (
        json.loads(body) if headers.get("content-type", "").startswith("application/json") else body
    )
    return Answer(int(lines[0].split()[1]), headers, parsed)


def read_interim(connection: socket.socket) -> bytes:
    """The status line of an interim (1xx) response, such as 100 Continue."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = connection.recv(1)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    return data.split(b"\r\n", 1)[0]


def closed_by_server(connection: socket.socket) -> bool:
    """Whether the server closes the connection (before the socket's timeout), reading
    and dropping anything it sends first."""
    try:
        while connection.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True
