"""Response message → JSON: the writing half of the transcoder (grpc-gateway's marshaler).

Every response passes through here, so the proto3 JSON for each message type is compiled
once into a plan of per-field converters instead of walking the descriptors on every call
as google.protobuf.json_format does. The output is the library's, exactly:
`json_format.MessageToDict(message, always_print_fields_with_no_presence=True,
preserving_proto_field_name=not use_json_names)` (tests/test_json_conformance.py holds it
to that). Well-known types (Any, Value, Timestamp…) are handed to the library.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.json_options import (
    FLOAT_TYPES,
    INT64_RANGES,
    NULL_VALUE,
    WELL_KNOWN_PACKAGE,
    JsonOptions,
    enum_json_names,
    field_key,
    is_map,
)
from gateway.routes import Route, resolve

_HTTP_BODY = "google.api.HttpBody"


def response_payload(route: Route, message: Message, options: JsonOptions) -> Any:
    """The JSON value for a response: the whole message, or its `response_body` field."""
    if route.response_body:
        target, leaf = resolve(message, route.response_body)
        fd = target.DESCRIPTOR.fields_by_name[leaf]
        return message_to_json(target, options).get(field_key(fd, options.use_json_names))
    return message_to_json(message, options)


def http_body(route: Route, message: Message) -> Message | None:
    """The google.api.HttpBody a method answers with (whole or as its response_body), if
    it answers with raw bytes rather than JSON."""
    if route.response_body:
        target, leaf = resolve(message, route.response_body)
        message = getattr(target, leaf)
    return message if message.DESCRIPTOR.full_name == _HTTP_BODY else None


def message_to_json(message: Message, options: JsonOptions) -> dict[str, Any]:
    """Proto3 JSON for a message, printing fields without presence even when default.

    The same output as json_format.MessageToDict(always_print_fields_with_no_presence=True),
    from a per-type plan compiled once: the hot path (every response) skips the library's
    generic reflection.
    """
    return _writer(message.DESCRIPTOR, options.use_json_names)(message)


_Writer = Callable[[Message], dict[str, Any]]
#: Keyed by the descriptor itself: two pools may each have a type of the same name.
_writers: dict[tuple[Descriptor, bool], _Writer] = {}


def _writer(descriptor: Descriptor, use_json_names: bool) -> _Writer:
    cache_key = (descriptor, use_json_names)
    writer = _writers.get(cache_key)
    if writer is not None:
        return writer
    if descriptor.file.package == WELL_KNOWN_PACKAGE:
        # Well-known types have special JSON forms; the library knows them.
        def writer(message: Message) -> Any:
            return json_format.MessageToDict(
                message,
                always_print_fields_with_no_presence=True,
                preserving_proto_field_name=not use_json_names,
            )

        _writers[cache_key] = writer
        return writer
    plan: list[tuple[str, str, bool, Callable[[Any], Any]]] = []

    def writer(message: Message) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for name, key, has_presence, convert in plan:
            if has_presence and not message.HasField(name):
                continue
            document[key] = convert(getattr(message, name))
        return document

    # Known before its plan is made: a field of a type that contains itself (directly or
    # not) finds this writer, and each message field calls its type's writer directly.
    _writers[cache_key] = writer
    plan.extend(
        (fd.name, field_key(fd, use_json_names), fd.has_presence, _value_writer(fd, use_json_names))
        for fd in descriptor.fields
    )
    return writer


def _value_writer(fd: FieldDescriptor, use_json_names: bool) -> Callable[[Any], Any]:
    if is_map(fd):
        value_fd = fd.message_type.fields_by_name["value"]
        convert_value = _single_writer(value_fd, use_json_names)
        if fd.message_type.fields_by_name["key"].type == FieldDescriptor.TYPE_BOOL:
            return lambda container: {
                "true" if k else "false": convert_value(v) for k, v in container.items()
            }
        return lambda container: {str(k): convert_value(v) for k, v in container.items()}
    convert = _single_writer(fd, use_json_names)
    if fd.is_repeated:
        return lambda container: [convert(item) for item in container]
    return convert


def _single_writer(fd: FieldDescriptor, use_json_names: bool) -> Callable[[Any], Any]:
    kind = fd.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return _writer(fd.message_type, use_json_names)
    if kind in INT64_RANGES:
        return str
    if kind == FieldDescriptor.TYPE_BYTES:
        return lambda value: base64.b64encode(value).decode("ascii")
    if kind == FieldDescriptor.TYPE_ENUM:
        if fd.enum_type.full_name == NULL_VALUE:
            return lambda value: None
        names = enum_json_names(fd.enum_type)
        return lambda value: names.get(value, value)  # open enums keep unknown numbers
    if kind == FieldDescriptor.TYPE_FLOAT:
        return _float32_json
    if kind in FLOAT_TYPES:
        return _double_json
    return _identity


def _identity(value: Any) -> Any:
    return value


def _double_json(value: float) -> Any:
    if math.isfinite(value):
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


_FLOAT32 = struct.Struct("<f")


def _float32_json(value: float) -> Any:
    """A float field as json_format writes it (type_checkers.ToShortestFloat): the value
    with the fewest significant digits, six at least, that is the same float32 — 0.1,
    not the double 0.10000000149011612 that the float32 nearest 0.1 is."""
    if not math.isfinite(value):
        return _double_json(value)
    for spelling in ("{:.6g}", "{:.7g}", "{:.8g}"):
        rounded = float(spelling.format(value))
        if _FLOAT32.unpack(_FLOAT32.pack(rounded))[0] == value:
            return rounded
    return float(f"{value:.9g}")  # nine digits always tell float32 values apart
