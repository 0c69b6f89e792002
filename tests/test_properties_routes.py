"""Properties of the mux half of the transcoder: path templates (gateway/routes.py), the
router over the real contract (gateway/routing.py) and query text → request fields
(gateway/json_reader.build_request), on generated hostile text."""

from __future__ import annotations

import base64
import math
from typing import Any
from urllib.parse import quote

import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contract import FILE_DESCRIPTORS, CallFailed, error_reason
from gateway.errors import METHOD_NOT_ALLOWED
from gateway.json_options import JsonOptions
from gateway.json_reader import TranscodeError, build_request
from gateway.routes import PathTemplate, Route, discover_routes
from gateway.routing import Router
from tests.test_json_conformance import EVERYTHING, Everything, _same, _scalar_strategy

ROUTES = discover_routes(FILE_DESCRIPTORS)
ROUTER = Router(ROUTES)
SETTINGS = settings(max_examples=150, deadline=None, database=None)

#: Literal segment text: the characters templates use, and regex metacharacters.
_LITERAL = st.text(st.sampled_from("abz09-_.~+()[]?|^$\\"), min_size=1, max_size=6)
#: A path variable's value: anything but a slash (a `*` is one segment).
_SEGMENT = st.text(st.characters(blacklist_characters="/", codec="utf-8"), min_size=1, max_size=8)


@st.composite
def _templates(draw: st.DrawFn) -> tuple[str, str, dict[str, str]]:
    """(template, a path it matches, the values the path holds)."""
    parts, path, values = [], [], {}
    for index in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            literal = draw(_LITERAL)
            parts.append(literal)
            path.append(literal)
        else:
            name = f"f{index}.x" if draw(st.booleans()) else f"f{index}"
            parts.append("{" + name + "}")
            values[name] = draw(_SEGMENT)
            path.append(values[name])
    if draw(st.booleans()):  # a trailing `**` takes the rest, slashes and all
        rest = draw(st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join))
        parts.append("{rest=**}")
        values["rest"] = rest
        path.append(rest)
    return "/" + "/".join(parts), "/" + "/".join(path), values


# Catches: literal text used as a regex unescaped (`.`, `+`, `?`, `(` in a literal), a
# variable's group spilling across `/`, a trailing `**` that stops at a slash, and group
# names mapped to the wrong field.
@SETTINGS
@given(_templates())
def test_a_template_matches_the_paths_built_from_it(case: tuple[str, str, dict[str, str]]) -> None:
    template, path, values = case
    parsed = PathTemplate.parse(template)
    assert parsed.match(path) == values
    if "rest" not in values:
        assert parsed.match(path + "/extra") is None


# Catches: a variable that matches an empty segment (`/api/contacts/get/` reaching GetContact
# with id ""), and a literal template matching a longer path.
@SETTINGS
@given(_templates())
def test_an_empty_segment_fills_no_variable(case: tuple[str, str, dict[str, str]]) -> None:
    template, _, values = case
    if not values:
        return
    empty = template
    for name in values:
        empty = empty.replace("{" + name + "}", "").replace("{" + name + "=**}", "")
    assert PathTemplate.parse(template).match(empty) is None


def _route_path(route: Route, values: dict[str, str]) -> str:
    path = route.path.template
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


@st.composite
def _route_calls(draw: st.DrawFn) -> tuple[Route, dict[str, str], str]:
    route = draw(st.sampled_from(ROUTES))
    values = {name: draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=10))
              for name in route.path.variables.values()}  # fmt: skip
    return route, values, _route_path(route, values)


# Catches: path variables handed on still percent-encoded (or decoded before matching, so
# an encoded `/` splits a segment), a HEAD that does not reach its GET, and a route order
# in which a variable route shadows a literal one.
@SETTINGS
@given(_route_calls())
def test_the_router_finds_each_route_and_decodes_its_variables(
    call: tuple[Route, dict[str, str], str],
) -> None:
    route, values, path = call
    assert ROUTER.match(route.http_method, path) == (route, values)
    if route.http_method == "GET":
        assert ROUTER.match("HEAD", path) == (route, values)
    else:
        with pytest.raises(CallFailed) as refused:
            ROUTER.match("PUT", path)
        assert error_reason(refused.value.status) == METHOD_NOT_ALLOWED


# Catches: any exception but the documented refusal (a 500) on a hostile path or verb.
@SETTINGS
@given(st.sampled_from(["GET", "POST", "HEAD", "DELETE", "get", ""]), st.text(max_size=40))
def test_the_router_refuses_any_other_path_with_call_failed(verb: str, path: str) -> None:
    try:
        route, _ = ROUTER.match(verb, path)
    except CallFailed:
        return
    assert route.path.match(path) is not None


# ------------------------------------------------------------------------- query text

#: Route over the conformance message: every scalar type, repeated too, bindable by query.
QUERY_ROUTE = Route("GET", PathTemplate.parse("/q"), None, "", "", Everything, Everything)  # type: ignore[arg-type]
_QUERY_FIELDS = [
    fd
    for fd in EVERYTHING.fields
    if fd.type != FieldDescriptor.TYPE_MESSAGE
    and fd.containing_oneof is None
    and (fd.enum_type is None or fd.enum_type.name == "Color")
]


def _query_text(fd: FieldDescriptor, value: Any) -> str:
    """How a client spells a field's value in a query string."""
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return "true" if value else "false"
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.urlsafe_b64encode(value).decode().rstrip("=")
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return fd.enum_type.values_by_number[value].name
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


@st.composite
def _queries(draw: st.DrawFn) -> tuple[list[tuple[str, str]], Any]:
    fields = draw(st.lists(st.sampled_from(_QUERY_FIELDS), unique=True, max_size=6))
    query, expected = [], Everything()
    for fd in fields:
        strategy = _scalar_strategy(fd)
        if fd.enum_type is not None:
            strategy = st.sampled_from([value.number for value in fd.enum_type.values])
        if fd.type == FieldDescriptor.TYPE_FLOAT:
            strategy = st.floats(width=32)
        values = draw(st.lists(strategy, min_size=1, max_size=3 if fd.is_repeated else 1))
        # Text can only say NaN, not which one: expect the canonical NaN, not a payload.
        values = [math.nan if isinstance(v, float) and math.isnan(v) else v for v in values]
        key = draw(st.sampled_from([fd.name, fd.json_name]))
        query += [(key, _query_text(fd, value)) for value in values]
        if fd.is_repeated:
            getattr(expected, fd.name).extend(values)
        else:
            setattr(expected, fd.name, values[-1])
    return draw(st.permutations(query)) if not any(
        fd.is_repeated for fd in fields
    ) else query, expected


# Catches: a repeated parameter keeping only its last value, json_name or proto name not
# both accepted, integer edge values refused or wrapped, unpadded URL-safe base64 refused,
# enum names not read.
@SETTINGS
@given(_queries())
def test_query_parameters_fill_their_fields(case: tuple[list[tuple[str, str]], Any]) -> None:
    query, expected = case
    built = build_request(QUERY_ROUTE, {}, query, None, JsonOptions())
    assert _same(built, expected), (query, built, expected)


# Catches: any exception but TranscodeError (a 500) on hostile query text, e.g. a dotted key
# through a scalar (`singleInt32.x`), a huge integer, a lone surrogate, an unknown enum name.
@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from([fd.name for fd in EVERYTHING.fields])
            | st.sampled_from(
                ["inner.name", "inner.x", "singleInt32.x", "child.child.singleBytes", "", ".", "x"]
            )
            | st.text(max_size=12),
            st.text(max_size=12) | st.integers().map(str),
        ),
        max_size=6,
    ),
    st.sampled_from(ROUTES) | st.just(QUERY_ROUTE),
)
def test_hostile_query_text_is_a_transcode_error_or_a_message(
    query: list[tuple[str, str]], route: Route
) -> None:
    body = {} if route.body else None
    try:
        message = build_request(route, {}, query, body, JsonOptions())
    except TranscodeError as error:
        assert error.violations
        return
    assert isinstance(message, route.request_type)
