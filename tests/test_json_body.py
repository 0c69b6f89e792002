"""gateway.json_body: the one-copy parse reads what json.loads reads, and a RawText's
chunks decode exactly what the C2C surface's whole-string decoding does, refusing exactly
what it refuses."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.json_body import LONG_STRING, Path, RawText, parse
from gateway.surfaces.c2c import decode_content

LONG = "A" * LONG_STRING


def materialized(value: Any) -> Any:
    if isinstance(value, RawText):
        return value.text()
    if isinstance(value, dict):
        return {key: materialized(item) for key, item in value.items()}
    if isinstance(value, list):
        return [materialized(item) for item in value]
    return value


def keep_all(path: Path) -> bool:
    return True


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"files": [{"content": LONG}, {"content": "short"}], "email": LONG + "b"}),
        json.dumps({LONG: LONG}),  # a long key is never cut: the whole body is parsed
        '{"a": "x\\"' + LONG + '", "b": 1}',  # a run inside an escaped string
        '["a",' + " " * LONG_STRING + ', "b"]',  # a long run between two strings
        json.dumps([LONG, [LONG, {"k": LONG}]]),
        '{"a": "' + LONG + '"',  # not JSON: the error is json.loads' own
    ],
)
def test_parse_reads_what_json_loads_reads(text: str) -> None:
    body = bytearray(text.encode())
    try:
        expected = json.loads(text)
    except json.JSONDecodeError as error:
        with pytest.raises(json.JSONDecodeError) as raised:
            parse(body, json.loads, keep_all)
        assert (raised.value.lineno, raised.value.colno) == (error.lineno, error.colno)
        return
    assert materialized(parse(body, json.loads, keep_all)) == expected
    assert parse(body, json.loads, lambda path: False) == expected


def test_only_the_chosen_strings_stay_raw() -> None:
    body = bytearray(json.dumps({"files": [{"content": LONG}], "email": LONG}).encode())
    document = parse(body, json.loads, lambda path: path == ("files", 0, "content"))
    assert isinstance(document["files"][0]["content"], RawText)
    assert document["email"] == LONG


def decoded(text: str, size: int) -> bytes | None:
    body = bytearray(json.dumps(text).encode())
    raw = RawText(body, 1, len(body) - 1)
    try:
        return b"".join(raw.base64_chunks(size))
    except ValueError:
        return None


def whole(text: str) -> bytes | None:
    try:
        return decode_content(text)
    except ValueError:
        return None


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=200),
    spaces=st.lists(st.integers(0, 400), max_size=4),
    cut=st.integers(0, 4),
    tail=st.sampled_from(["", "=", "==", "A", "A=", " ", "!", "=A"]),
    uri=st.booleans(),
    size=st.sampled_from([3, 6, 9, 30]),
)
def test_chunks_decode_as_the_whole_string_does(
    data: bytes, spaces: list[int], cut: int, tail: str, uri: bool, size: int
) -> None:
    text = base64.b64encode(data).decode()
    text = text[: max(0, len(text) - cut)] + tail
    for position in sorted(spaces, reverse=True):
        text = text[:position] + " " + text[position:]
    if uri:
        text = "data:application/pdf;base64," + text
    assert decoded(text, size) == whole(text)
