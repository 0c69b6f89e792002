"""Schemathesis fuzzes every described operation of a live `crmgate serve`, with valid
credentials of each kind and without: no 5xx, no undocumented status, no response that
breaks the description (tests/support/fuzz.py; `make fuzz` runs it long)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.fuzz import Credentials, fuzz, provision
from tests.support.processes import CrmgateProcess


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CrmgateProcess, Credentials]]:
    with CrmgateProcess.start(tmp_path_factory.mktemp("crmgate")) as process:
        yield process, provision(process)


@pytest.mark.parametrize("surface", ["c2c", "close", "voyzu"])
@pytest.mark.parametrize("authenticated", [True, False], ids=["credentials", "anonymous"])
def test_fuzzing_finds_no_failure(
    deployment: tuple[CrmgateProcess, Credentials],
    surface: str,
    authenticated: bool,
    tmp_path: Path,
) -> None:
    crmgate, credentials = deployment
    extra = credentials.arguments(surface) if authenticated else []
    outcome = fuzz(crmgate, surface, extra, tmp_path)
    print(f"{surface} {'with' if authenticated else 'without'} credentials: {outcome.line()}")
    assert outcome.operations > 0
    assert (outcome.exit_code, outcome.failures) == (0, 0), outcome.output


def test_a_form_part_header_with_a_control_character_is_malformed_not_a_500(
    deployment: tuple[CrmgateProcess, Credentials],
) -> None:
    """Found by the fuzzer: aiohttp's header parser refused the part and the refusal
    escaped as a 500."""
    crmgate, _ = deployment
    body = (
        b'--b\r\nContent-Disposition: form-data; name="\x1f"\r\n\r\nx\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\nbf\r\n--b--\r\n'
    )
    answer = requests.post(
        crmgate.http_url + "/storage/bucket",
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=b"},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/xml; charset=utf-8"
    assert re.fullmatch(
        r'<\?xml version="1.0" encoding="UTF-8"\?>\n<Error><Code>MalformedPOSTRequest</Code>'
        r"<Message>The body of your POST request is not well-formed multipart/form-data."
        r"</Message><RequestId>[0-9a-f]+-[0-9]+</RequestId></Error>",
        answer.text,
    ), answer.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/files/download/0/a%0Ab", {"error": "not_found", "message": "No such file."}),
        ("/api/v1/nothing%0A", None),
    ],
)
def test_a_path_with_a_newline_is_answered_in_the_surface_format(
    deployment: tuple[CrmgateProcess, Credentials], path: str, body: dict[str, str] | None
) -> None:
    """Found by the fuzzer: aiohttp's `.` stops at a newline, so such paths matched no
    route and got aiohttp's plain-text 404."""
    crmgate, _ = deployment
    answer = requests.get(crmgate.http_url + path, timeout=10)
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    if body is not None:
        assert answer.json() == body
