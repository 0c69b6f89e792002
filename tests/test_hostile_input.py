"""Hostile input gets each surface's JSON envelope with its documented status: never a 500,
never text/plain, never a traceback. Raw sockets, so bytes that no HTTP client would send
(invalid UTF-8 in headers) reach the server as they are."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.support.processes import CrmgateProcess

C2C_HEADERS = b"X-Api-Version: v1\r\nContent-Type: application/json\r\n"


def send(crmgate: CrmgateProcess, head: bytes, body: bytes = b"") -> tuple[int, str, Any]:
    """One raw HTTP/1.1 request; (status, content type, parsed JSON body)."""
    host, port = crmgate.http_url.removeprefix("http://").rsplit(":", 1)
    request = head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    header, _, payload = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    kind = next(
        (
            line.split(":", 1)[1].strip()
            for line in lines
            if line.lower().startswith("content-type:")
        ),
        "",
    )
    return status, kind, json.loads(payload) if kind.startswith("application/json") else payload


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"Authorization: Bearer c2c_\xff\xfe", 401),
        (b"X-Api-Key: c2c_\xc3\x28", 401),
        (b"Accept-Language: \xff", 401),
        (b"X-Request-Id: \xfe\xff", 401),
    ],
)
def test_c2c_headers_that_are_not_utf8(
    crmgate: CrmgateProcess, header: bytes, expected: int
) -> None:
    status, kind, body = send(
        crmgate, b"GET /api/c2c/health HTTP/1.1\r\nHost: x\r\n" + C2C_HEADERS + header + b"\r\n"
    )
    assert (status, kind) == (expected, "application/json; charset=utf-8")
    assert body == {"error": "invalid_api_key", "message": "Invalid or missing credentials."}


def test_voyzu_and_close_credentials_that_are_not_utf8(crmgate: CrmgateProcess) -> None:
    status, _, body = send(
        crmgate,
        b"POST /api/contacts/search HTTP/1.1\r\nHost: x\r\nCookie: voyzu_session_id=\xff\xfe\r\n",
        b"{}",
    )
    assert (status, set(body)) == (401, {"ErrorMessage"})
    status, _, body = send(
        crmgate,
        b"POST /api/v1/files/upload/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic w6k6\xff\r\n"
        b"Content-Type: application/json\r\n",
        b'{"filename": "a.txt", "content_type": "text/plain"}',
    )
    assert (status, set(body)) == (401, {"error"})


def test_a_host_that_is_not_utf8(crmgate: CrmgateProcess) -> None:
    status, kind, body = send(
        crmgate, b"GET /api/c2c/health HTTP/1.1\r\nHost: \xff\xfe\r\n" + C2C_HEADERS
    )
    assert (status, kind) == (401, "application/json; charset=utf-8")
    assert body["error"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b'{"email": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "The body is nested too deeply to read.",
        ),
        (b'{"email": ' + b"9" * 5_000 + b"}", "The body holds an integer of more than 32 digits."),
        (
            b'{"email": "a\\u0000b@example.com", "files": []}',
            "The body holds a NUL character (\\u0000), which no field accepts.",
        ),
    ],
    ids=["deep", "long-integer", "nul"],
)
def test_c2c_bodies_that_cannot_be_read(
    crmgate: CrmgateProcess, c2c_key: str, raw: bytes, message: str
) -> None:
    status, _, body = send(
        crmgate,
        b"POST /api/c2c/contacts/assets HTTP/1.1\r\nHost: x\r\n"
        + C2C_HEADERS
        + b"Authorization: Bearer "
        + c2c_key.encode()
        + b"\r\n",
        raw,
    )
    assert (status, body) == (
        422,
        {"error": "validation_failed", "message": message, "errors": {}},
    )


def test_voyzu_bodies_that_cannot_be_read(crmgate: CrmgateProcess) -> None:
    for raw in (b"[" * 100_000, b'{"Page": ' + b"1" * 5_000 + b"}", b'{"SearchText": "\\u0000"}'):
        status, _, body = send(crmgate, b"POST /api/contacts/search HTTP/1.1\r\nHost: x\r\n", raw)
        assert (status, set(body)) == (400, {"ErrorMessage"}), raw[:20]


@pytest.fixture(scope="module")
def c2c_key(crmgate: CrmgateProcess) -> str:
    crmgate.admin("tenant", "create", "hostile")
    return crmgate.admin("apikey", "create", "--tenant", "hostile", "--kind", "c2c")
