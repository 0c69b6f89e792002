"""Hostile connections: clients that stall mid-request, many large bodies at once, and
unauthenticated floods. Each test runs its own `crmgate serve` (SQLite) with the setting
it needs, and talks to it over raw sockets."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import MAX_BODY_BYTES
from tests.support.processes import CrmgateProcess
from tests.support.raw_http import Answer, closed_by_server, connect, exchange, read_answer

C2C_POST = b"POST /api/c2c/contacts/assets HTTP/1.1\r\nHost: x\r\nX-Api-Version: v1\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def stalling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrmgateProcess]:
    """crmgate with a 1-second read timeout."""
    data_dir = tmp_path_factory.mktemp("stalling")
    with CrmgateProcess.start(data_dir, env={"CRMGATE_READ_TIMEOUT": "1"}) as crmgate:
        yield crmgate


def credentials(crmgate: CrmgateProcess) -> dict[str, bytes]:
    """A header line of each surface's credential, for a fresh tenant."""
    crmgate.admin("tenant", "create", "edge")
    c2c = crmgate.admin("apikey", "create", "--tenant", "edge", "--kind", "c2c")
    close = crmgate.admin("apikey", "create", "--tenant", "edge", "--kind", "close")
    crmgate.admin(
        "user",
        "create",
        "--tenant",
        "edge",
        "--email",
        "e@edge.example",
        "--password",
        "pw-edge-12",
    )
    body = b'{"Email": "e@edge.example", "Password": "pw-edge-12"}'
    signed_in = exchange(
        crmgate.http_url,
        b"POST /api/auth HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert signed_in.status == 200, signed_in.body
    return {
        "c2c": b"Authorization: Bearer " + c2c.encode() + b"\r\n",
        "close": b"Authorization: Basic " + base64.b64encode(close.encode() + b":") + b"\r\n",
        "voyzu": b"Cookie: voyzu_session_id=" + signed_in.body["SessionId"].encode() + b"\r\n",
    }


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"POST /api/contacts/search HTTP/1.1\r\nHost: x\r\n",
        b"GET /api/c2c/hea",
        C2C_POST + b'Content-Length: 100\r\n\r\n{"email": ',
    ],
    ids=["nothing", "half-a-head", "half-a-line", "half-a-body"],
)
def test_a_client_that_stalls_is_closed(stalling: CrmgateProcess, sent: bytes) -> None:
    with connect(stalling.http_url, timeout=30) as connection:
        connection.sendall(sent)
        assert closed_by_server(connection)


def test_a_client_that_stalls_mid_body_after_its_credentials(stalling: CrmgateProcess) -> None:
    """The route is reading the body when the client stops sending."""
    auth = credentials(stalling)
    for head in (
        C2C_POST + auth["c2c"],
        b"POST /api/contacts/search HTTP/1.1\r\nHost: x\r\n" + auth["voyzu"],
        b"POST /api/v1/files/upload/ HTTP/1.1\r\nHost: x\r\n" + auth["close"],
    ):
        with connect(stalling.http_url, timeout=30) as connection:
            connection.sendall(head + b'Content-Length: 100\r\n\r\n{"a": ')
            assert closed_by_server(connection)
    assert not [line for line in stalling.output if '"level": "error"' in line]


def test_an_idle_connection_between_requests_is_not_a_stall(stalling: CrmgateProcess) -> None:
    """Keep-alive idleness is no stall: the connection outlives the read timeout and takes
    the next request."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(stalling.http_url, timeout=3) as connection:
        connection.sendall(request)
        assert read_answer(connection).status == 200
        assert not closed_by_server(connection)  # 3 s without a byte either way
        connection.sendall(request)
        assert read_answer(connection).status == 200


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrmgateProcess]:
    """crmgate reading at most one large body at a time."""
    data_dir = tmp_path_factory.mktemp("busy")
    with CrmgateProcess.start(data_dir, extra=("--max-large-uploads", "1")) as crmgate:
        yield crmgate


@pytest.fixture(scope="module")
def busy_auth(busy: CrmgateProcess) -> dict[str, bytes]:
    return credentials(busy)


MiB = 1024 * 1024
LARGE = 2 * MiB
BUSY = "Too many large requests are being received; please retry in 5 seconds."


def c2c_large(crmgate: CrmgateProcess, auth: dict[str, bytes], size: int = LARGE) -> Answer:
    """A C2C post of a large body that is not JSON: read whole, then refused with 422."""
    return exchange(
        crmgate.http_url,
        C2C_POST
        + auth["c2c"]
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n[" % size
        + b" " * (size - 1),
    )


def hold(crmgate: CrmgateProcess, auth: dict[str, bytes], announced: int) -> socket.socket:
    """A connection whose large body (`announced` bytes) is being read, for as long as it
    stays open; returned once the server has made room for it, which it does after the
    key's check: then a body that would not fit beside it gets 503."""
    holder = connect(crmgate.http_url)
    holder.sendall(C2C_POST + auth["c2c"] + b"Content-Length: %d\r\n\r\n[" % announced)
    deadline = time.monotonic() + 30
    while c2c_large(crmgate, auth, MAX_BODY_BYTES - announced + 2 * MiB).status == 422:
        assert time.monotonic() < deadline, "the holder's body was never given room"
    return holder


def test_large_bodies_beyond_the_limit_get_503(
    busy: CrmgateProcess, busy_auth: dict[str, bytes]
) -> None:
    """While a body of the largest size is being read, another large body gets 503 with
    Retry-After in its surface's envelope; once the first is done, the next is read."""
    auth = busy_auth
    invalid = b"[" + b" " * (LARGE - 1)  # not JSON: read whole, then refused with 422
    assert c2c_large(busy, auth).status == 422  # there is room
    holder = hold(busy, auth, MAX_BODY_BYTES)
    answer = c2c_large(busy, auth)
    assert (answer.status, answer.headers["retry-after"], answer.body) == (
        503,
        "5",
        {"error": "service_unavailable", "message": BUSY},
    )
    for head, expected in (
        (b"POST /api/v1/files/upload/ HTTP/1.1\r\n" + auth["close"], {"error": BUSY}),
        (b"POST /api/contacts/search HTTP/1.1\r\n" + auth["voyzu"], {"ErrorMessage": BUSY}),
    ):
        answer = exchange(
            busy.http_url,
            head + b"Host: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % LARGE + invalid,
        )
        assert (answer.status, answer.headers["retry-after"], answer.body) == (503, "5", expected)
    upload = exchange(
        busy.http_url,
        b"POST /storage/bucket HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % LARGE + invalid,
    )
    assert (upload.status, upload.headers["retry-after"], upload.headers["content-type"]) == (
        503,
        "5",
        "application/xml; charset=utf-8",
    )
    assert b"<Code>ServiceUnavailable</Code>" in upload.body
    holder.close()
    deadline = time.monotonic() + 30
    while c2c_large(busy, auth).status == 503:  # room is made once the server sees the close
        assert time.monotonic() < deadline, "the room was never given back"


def test_large_bodies_share_the_room_by_their_length(
    busy: CrmgateProcess, busy_auth: dict[str, bytes]
) -> None:
    """A body holds the length it announces, not a whole slot: beside one that leaves
    3 MiB of the room, a 2 MiB body is read (422: not JSON) and a 4 MiB one gets 503."""
    holder = hold(busy, busy_auth, MAX_BODY_BYTES - 3 * MiB)
    try:
        assert c2c_large(busy, busy_auth, 4 * MiB).status == 503
        assert c2c_large(busy, busy_auth, 2 * MiB).status == 422
        assert [c2c_large(busy, busy_auth, 2 * MiB).status for _ in range(3)] == [422] * 3
    finally:
        holder.close()


def test_unauthenticated_80mb_posts_are_not_buffered(tmp_path: Path) -> None:
    """Four concurrent unauthenticated 80 MB posts get 401 envelopes and raise the
    serving process's peak RSS (VmHWM, reset first) by at most 64 MiB."""
    posts = [
        (
            C2C_POST + b"X-Api-Key: c2c_wrong\r\n",
            {"error": "invalid_api_key", "message": "Invalid or missing credentials."},
        ),
        (
            b"POST /api/v1/files/upload/ HTTP/1.1\r\nHost: x\r\n",
            {"error": "Invalid or missing credentials."},
        ),
        (
            b"POST /api/contacts/search HTTP/1.1\r\nHost: x\r\n",
            {"ErrorMessage": "Invalid or missing credentials."},
        ),
        (
            b"POST /api/contacts/create HTTP/1.1\r\nHost: x\r\nCookie: voyzu_session_id=forged\r\n",
            {"ErrorMessage": "Invalid or missing credentials."},
        ),
    ]
    size = 80 * 1000 * 1000
    with CrmgateProcess.start(tmp_path) as crmgate:
        pid = crmgate.processes[0].process.pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = vm_hwm(pid)
        answers: list[Answer | None] = [None] * len(posts)

        def post(index: int) -> None:
            answers[index] = post_without_waiting(crmgate.http_url, posts[index][0], size)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(posts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        growth = vm_hwm(pid) - before
    print(
        f"VmHWM {before / 2**20:.1f} MiB, +{growth / 2**20:.1f} MiB after 4 x 80 MB unauthenticated posts"
    )
    assert [(a.status, a.body) if a else None for a in answers] == [(401, e) for _, e in posts]
    assert growth <= 64 * 2**20


def post_without_waiting(http_url: str, head: bytes, size: int) -> Answer:
    """Send a `size`-byte body whole (unless the server closes first) while the answer is
    read as it comes."""
    connection = connect(http_url, timeout=60)
    answer: list[Answer] = []
    reader = threading.Thread(target=lambda: answer.append(read_answer(connection)))
    with connection:
        connection.sendall(head + b"Content-Length: %d\r\n\r\n" % size)
        reader.start()
        chunk = b"x" * (1024 * 1024)
        try:
            for _ in range(size // len(chunk)):
                connection.sendall(chunk)
            connection.sendall(b"x" * (size % len(chunk)))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close the connection once it has answered
        reader.join()
    return answer[0]


def vm_hwm(pid: int) -> int:
    """The process's peak resident set size, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_socket_helper_sanity() -> None:
    """closed_by_server tells a closed connection from an open one."""
    left, right = socket.socketpair()
    left.settimeout(0.2)
    assert not closed_by_server(left)
    right.close()
    assert closed_by_server(left)
    left.close()
