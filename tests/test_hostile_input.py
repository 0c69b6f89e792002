"""Hostile input gets each surface's JSON envelope with its documented status: never a 500,
never text/plain, never a traceback. Raw sockets, so bytes that no HTTP client would send
(invalid UTF-8 in headers) reach the server as they are."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.contract import CREDENTIAL_CHECKS, PUBLIC_METHODS
from gateway.surfaces import default_surfaces
from tests.support.processes import CrmgateProcess
from tests.support.raw_http import connect, exchange, read_answer, read_interim

C2C_HEADERS = b"X-Api-Version: v1\r\nContent-Type: application/json\r\n"


def send(crmgate: CrmgateProcess, head: bytes, body: bytes = b"") -> tuple[int, str, Any]:
    """One raw HTTP/1.1 request; (status, content type, parsed JSON body)."""
    request = head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    answer = exchange(crmgate.http_url, request)
    return answer.status, answer.content_type, answer.body


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
        (
            b'{"email": ' + b"[" * 64 + b"]" * 64 + b"}",
            "The body is nested too deeply to read.",
        ),
        (b'{"email": ' + b"9" * 5_000 + b"}", "The body holds an integer of more than 32 digits."),
        (
            b'{"email": "a\\u0000b@example.com", "files": []}',
            "The body holds a NUL character (\\u0000), which no field accepts.",
        ),
    ],
    ids=["deep", "deeper-than-64", "long-integer", "nul"],
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


def test_voyzu_bodies_that_cannot_be_read(crmgate: CrmgateProcess, session: bytes) -> None:
    for raw in (b"[" * 100_000, b'{"Page": ' + b"1" * 5_000 + b"}", b'{"SearchText": "\\u0000"}'):
        status, _, body = send(
            crmgate, b"POST /api/contacts/search HTTP/1.1\r\nHost: x\r\n" + session, raw
        )
        assert (status, set(body)) == (400, {"ErrorMessage"}), raw[:20]


#: Refused before its route runs, the path unknown: a neutral envelope.
HEAD_TOO_LARGE = {
    "error": "request_head_too_large",
    "message": "The request line and each header may hold at most 8190 bytes.",
}
MALFORMED_HTTP = {"error": "malformed_http", "message": "The request is not well-formed HTTP."}
SECRET = b"c2c_" + b"S3cr3t" * 1500


@pytest.mark.parametrize(
    ("request_bytes", "status", "expected"),
    [
        (b"GET /api/c2c/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431, HEAD_TOO_LARGE),
        (b"GET /api/v1/files/" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 431, HEAD_TOO_LARGE),
        (
            b"GET /api/c2c/health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + SECRET
            + b"\r\n\r\n",
            431,
            HEAD_TOO_LARGE,
        ),
        (
            b"POST /api/contacts/search HTTP/1.1\r\nCookie: voyzu_session_id="
            + SECRET
            + b"\r\n\r\n",
            431,
            HEAD_TOO_LARGE,
        ),
        (b"GET /api/c2c/health HTTP/1.1\r\nBad Header: v\r\n\r\n", 400, MALFORMED_HTTP),
        (b"GET /api/c2c/health HTTP/1.1\r\nX-Key: a\x00b\r\n\r\n", 400, MALFORMED_HTTP),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, MALFORMED_HTTP),
        (b"GET /api/c2c/health HTTP/9.9\r\n\r\n", 400, MALFORMED_HTTP),
        (
            b"GET /api/c2c/health HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
            400,
            MALFORMED_HTTP,
        ),
        (
            b"POST /api/contacts/search HTTP/1.1\r\nContent-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n{}",
            400,
            MALFORMED_HTTP,
        ),
        (
            b"POST /api/contacts/search HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            MALFORMED_HTTP,
        ),
    ],
    ids=[
        "long-url",
        "long-url-close",
        "long-authorization",
        "long-cookie",
        "header-name",
        "nul-in-header",
        "tls",
        "version",
        "too-many-headers",
        "length-and-chunked",
        "bad-chunk",
    ],
)
def test_malformed_http_gets_a_json_envelope(
    crmgate: CrmgateProcess, request_bytes: bytes, status: int, expected: dict[str, str]
) -> None:
    """aiohttp's own refusals, made before any route runs, are JSON that quotes nothing
    the client sent; the log does not quote it either."""
    answer = exchange(crmgate.http_url, request_bytes)
    assert (answer.status, answer.content_type, answer.body) == (
        status,
        "application/json; charset=utf-8",
        expected,
    )
    assert not any(b"S3cr3t" in line.encode() for line in crmgate.output)


def test_a_body_the_protocol_cannot_deliver(
    crmgate: CrmgateProcess, c2c_auth: bytes, session: bytes
) -> None:
    """A chunked body broken after the route began reading it, or compressed wrongly, is
    the surface's refusal of a body that cannot be read."""
    unreadable = "The request body could not be read: its encoding is broken or it ended early."
    for path, credentials, expected in (
        (
            b"/api/c2c/contacts/assets",
            C2C_HEADERS + c2c_auth,
            (422, {"error": "validation_failed", "message": unreadable, "errors": {}}),
        ),
        (b"/api/contacts/search", session, (400, {"ErrorMessage": unreadable})),
    ):
        head = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + credentials
        with connect(crmgate.http_url) as connection:
            connection.sendall(head + b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
            assert read_interim(connection) == b"HTTP/1.1 100 Continue"  # the route runs
            connection.sendall(b'3\r\n{"a\r\nzz\r\n')
            answer = read_answer(connection)
        assert (answer.status, answer.body) == expected
        gzip = exchange(
            crmgate.http_url,
            head + b"Content-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!",
        )
        assert (gzip.status, gzip.body) == expected


def test_a_body_announced_too_large_is_refused_unread(
    crmgate: CrmgateProcess, c2c_auth: bytes
) -> None:
    """Only the head is sent: the answer comes without the body."""
    with connect(crmgate.http_url) as connection:
        connection.sendall(
            b"POST /api/c2c/contacts/assets HTTP/1.1\r\nHost: x\r\n"
            + C2C_HEADERS
            + c2c_auth
            + b"Content-Length: 200000000\r\n\r\n"
        )
        answer = read_answer(connection)
    assert (answer.status, answer.body) == (
        413,
        {
            "error": "payload_too_large",
            "message": "The request body is larger than 90527061 bytes.",
        },
    )


INVALID_CREDENTIALS = "Invalid or missing credentials."


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (
            b"POST /api/c2c/contacts/assets HTTP/1.1\r\n" + C2C_HEADERS,
            {"error": "invalid_api_key", "message": INVALID_CREDENTIALS},
        ),
        (
            b"POST /api/c2c/contacts/assets HTTP/1.1\r\n"
            + C2C_HEADERS
            + b"X-Api-Key: c2c_wrong\r\n",
            {"error": "invalid_api_key", "message": INVALID_CREDENTIALS},
        ),
        (
            b"POST /api/v1/files/upload/ HTTP/1.1\r\nContent-Type: application/json\r\n",
            {"error": INVALID_CREDENTIALS},
        ),
        (
            b"POST /api/v1/activity/email/ HTTP/1.1\r\nAuthorization: Basic YXBpX3dyb25nOg==\r\n",
            {"error": INVALID_CREDENTIALS},
        ),
        (b"POST /api/contacts/search HTTP/1.1\r\n", {"ErrorMessage": INVALID_CREDENTIALS}),
        (
            b"POST /api/contacts/create HTTP/1.1\r\nCookie: voyzu_session_id=wrong\r\n",
            {"ErrorMessage": INVALID_CREDENTIALS},
        ),
    ],
    ids=["c2c-none", "c2c-wrong", "close-none", "close-wrong", "voyzu-none", "voyzu-wrong"],
)
def test_credentials_are_checked_before_the_body(
    crmgate: CrmgateProcess, head: bytes, expected: dict[str, str]
) -> None:
    """Without valid credentials: 401 before a byte of the body is sent (so it is never
    buffered), and a malformed body earns no feedback."""
    with connect(crmgate.http_url) as connection:
        connection.sendall(head + b"Host: x\r\nContent-Length: 80000000\r\n\r\n")
        answer = read_answer(connection)
    assert (answer.status, answer.body) == (401, expected)
    status, _, body = send(crmgate, head + b"Host: x\r\n", b'{"no": json')
    assert (status, body) == (401, expected)


def test_every_surface_with_credentials_has_them_checked() -> None:
    """Each surface names its check, one of the contract's (which the server logs quietly
    when they pass), and none is public."""
    checks = {surface.credential_check for surface in default_surfaces()}
    assert {method for method, _, _ in checks if method} == CREDENTIAL_CHECKS
    assert not CREDENTIAL_CHECKS & PUBLIC_METHODS


@pytest.fixture(scope="module")
def c2c_key(crmgate: CrmgateProcess) -> str:
    crmgate.admin("tenant", "create", "hostile")
    return crmgate.admin("apikey", "create", "--tenant", "hostile", "--kind", "c2c")


@pytest.fixture(scope="module")
def c2c_auth(c2c_key: str) -> bytes:
    return b"Authorization: Bearer " + c2c_key.encode() + b"\r\n"


@pytest.fixture(scope="module")
def session(crmgate: CrmgateProcess, c2c_key: str) -> bytes:
    """A voyzu session's Cookie header line."""
    crmgate.admin(
        "user",
        "create",
        "--tenant",
        "hostile",
        "--email",
        "eve@hostile.example",
        "--password",
        "pw-hostile-1",
    )
    answer = exchange(
        crmgate.http_url,
        b"POST /api/auth HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: 60\r\n\r\n"
        b'{"Email": "eve@hostile.example", "Password": "pw-hostile-1"}',
    )
    assert answer.status == 200, answer.body
    return b"Cookie: voyzu_session_id=" + answer.body["SessionId"].encode() + b"\r\n"
