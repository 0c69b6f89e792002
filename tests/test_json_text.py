"""gateway.json_text writes what json.JSONEncoder writes with the same options."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.json_text import text_encoder

OPTIONS: list[dict[str, Any]] = [
    {"ensure_ascii": False, "separators": (",", ":")},  # responses
    {"default": str},  # log lines
]
VALUES: list[Any] = [
    {"data": {"status": "ok"}},
    {"é": "Ça va \u2028 \x00 \ud800", "n": [1, -2.5, 1e16, None, True, False]},
    {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
    {1: "int key", 2.5: "float key", None: "null key", False: "bool key"},
    "a string alone",
    [],
    {},
    {"when": datetime.date(2026, 11, 26)},
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
)


def written(value: Any, encode: Any) -> str:
    try:
        return encode(value)
    except TypeError as error:  # no default: both refuse what JSON cannot hold
        return f"TypeError: {error}"


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("value", VALUES)
def test_the_same_text_as_json(options: dict[str, Any], value: Any) -> None:
    expected = written(value, json.JSONEncoder(**options).encode)
    assert written(value, text_encoder(**options)) == expected


@pytest.mark.parametrize("options", OPTIONS)
@given(value=json_values)
def test_the_same_text_for_any_json_value(options: dict[str, Any], value: Any) -> None:
    assert text_encoder(**options)(value) == json.JSONEncoder(**options).encode(value)


def test_an_encoder_is_reused_after_a_refusal() -> None:
    encode = text_encoder(ensure_ascii=False, separators=(",", ":"))
    with pytest.raises(TypeError):
        encode({"a": [object()]})
    assert encode({"a": [1]}) == '{"a":[1]}'
