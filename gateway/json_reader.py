"""JSON → request message: the reading half of the transcoder (grpc-gateway's unmarshaler).

`build_request` merges path variables, query parameters and the JSON body into the request
message an HttpRule describes. Unlike google.protobuf.json_format.ParseDict it does not
stop at the first problem: every problem is collected as a `Violation` at a dotted path
(`files.0.content`) so a surface can report them all, in its own words.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.json_options import (
    FLOAT_TYPES,
    INT64_RANGES,
    INTEGER_RANGES,
    WELL_KNOWN_PACKAGE,
    JsonOptions,
    decode_base64,
    field_key,
    is_map,
)
from gateway.routes import Route, resolve

__all__ = ["TranscodeError", "Violation", "build_request", "decode_base64"]


@dataclass(frozen=True)
class Violation:
    """One thing wrong with a request, at a dotted path (`files.0.content`)."""

    field: str
    kind: str  # json, type, unknown_field, base64, enum, range
    message: str


class TranscodeError(Exception):
    """The HTTP request cannot become a request message."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))
        self.violations = violations


def build_request(
    route: Route,
    path_values: Mapping[str, str],
    query: Iterable[tuple[str, str]],
    body: Any,
    options: JsonOptions,
) -> Message:
    """The request message for one HTTP request; raises TranscodeError listing every
    problem found. `body` is the parsed JSON (ignored when the rule has no body)."""
    message = route.request_type()
    violations: list[Violation] = []
    bound: set[str] = set()
    if route.body == "*":
        _merge_body(body, message, "", violations, options)
        bound.update(f.name for f in message.DESCRIPTOR.fields)
    elif route.body:
        target, leaf = resolve(message, route.body)
        leaf_field = target.DESCRIPTOR.fields_by_name[leaf]
        label = field_key(leaf_field, options.use_json_names)
        _set_field(target, leaf_field, body, label, violations, options)
        bound.add(route.body.split(".")[0])
    for path, value in path_values.items():
        _set_text(message, path, [value], violations, options)
        bound.add(path.split(".")[0])
    by_name: dict[str, list[str]] = {}
    for key, value in query:
        by_name.setdefault(key, []).append(value)
    for key, values in by_name.items():
        top = _field_for_key(message.DESCRIPTOR, key.split(".")[0])
        if top is None or top.name in bound:
            continue  # query parameters the contract does not name are not ours
        _set_text(message, key, values, violations, options)
    if violations:
        raise TranscodeError(violations)
    return message


def _field_for_key(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    """Proto3 JSON parsers accept both the json_name and the proto field name."""
    found = descriptor.fields_by_name.get(key)
    if found is not None:
        return found
    for candidate in descriptor.fields:
        if candidate.json_name == key:
            return candidate
    return None


def _set_text(
    message: Message,
    dotted: str,
    values: list[str],
    violations: list[Violation],
    options: JsonOptions,
) -> None:
    """Set a field from path or query text, converting it to the field's type."""
    target = message
    parts = dotted.split(".")
    for part in parts[:-1]:
        descriptor = _field_for_key(target.DESCRIPTOR, part)
        if descriptor is None or descriptor.type != FieldDescriptor.TYPE_MESSAGE:
            violations.append(Violation(dotted, "unknown_field", "is not a known field"))
            return
        target = getattr(target, descriptor.name)
    descriptor = _field_for_key(target.DESCRIPTOR, parts[-1])
    if descriptor is None or descriptor.type == FieldDescriptor.TYPE_MESSAGE:
        violations.append(Violation(dotted, "unknown_field", "is not a known field"))
        return
    converted = [_text_value(descriptor, value) for value in values]
    if any(value is _INVALID for value in converted):
        violations.append(Violation(dotted, "type", f"must be {_type_name(descriptor)}"))
        return
    if descriptor.is_repeated:
        getattr(target, descriptor.name).extend(converted)
    else:
        setattr(target, descriptor.name, converted[-1])


_INVALID = object()


def _text_value(descriptor: FieldDescriptor, text: str) -> Any:
    kind = descriptor.type
    try:
        if kind in INTEGER_RANGES:
            low, high = INTEGER_RANGES[kind]
            number = int(text)
            return number if low <= number <= high else _INVALID
        if kind in FLOAT_TYPES:
            return float(text)
    except ValueError:
        return _INVALID
    if kind == FieldDescriptor.TYPE_BOOL:
        return {"true": True, "false": False}.get(text.lower(), _INVALID)
    if kind == FieldDescriptor.TYPE_ENUM:
        value = descriptor.enum_type.values_by_name.get(text)
        return value.number if value is not None else _INVALID
    if kind == FieldDescriptor.TYPE_BYTES:
        try:
            return decode_base64(text)
        except (ValueError, binascii.Error):
            return _INVALID
    return text


def _merge_body(
    body: Any, message: Message, path: str, violations: list[Violation], options: JsonOptions
) -> None:
    if not isinstance(body, dict):
        violations.append(Violation(path, "type", "must be an object"))
        return
    _merge_object(body, message, path, violations, options)


def _merge_object(
    data: dict[str, Any],
    message: Message,
    path: str,
    violations: list[Violation],
    options: JsonOptions,
) -> None:
    descriptor = message.DESCRIPTOR
    for key in list(data):
        field_descriptor = _field_for_key(descriptor, key)
        label = f"{path}.{key}" if path else key
        if field_descriptor is None:
            if not options.ignore_unknown_fields:
                violations.append(Violation(label, "unknown_field", "is not a known field"))
            continue
        _set_field(message, field_descriptor, data[key], label, violations, options)
        # Large strings (base64 files) are released as soon as they are converted.
        data[key] = None


def _set_field(
    message: Message,
    fd: FieldDescriptor,
    value: Any,
    path: str,
    violations: list[Violation],
    options: JsonOptions,
) -> None:
    if value is None and not _is_value_type(fd):
        return  # JSON null means "not set"
    if is_map(fd):
        if not isinstance(value, dict):
            violations.append(Violation(path, "type", "must be an object"))
            return
        container = getattr(message, fd.name)
        key_fd = fd.message_type.fields_by_name["key"]
        value_fd = fd.message_type.fields_by_name["value"]
        for key, item in value.items():
            key_value = _text_value(key_fd, key)
            if key_value is _INVALID:
                violations.append(Violation(f"{path}.{key}", "type", "has an invalid key"))
                continue
            if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                _convert_message(item, container[key_value], f"{path}.{key}", violations, options)
            else:
                converted = _scalar(value_fd, item, f"{path}.{key}", violations, options)
                if converted is not _INVALID:
                    container[key_value] = converted
        return
    if fd.is_repeated:
        if not isinstance(value, list):
            violations.append(Violation(path, "type", "must be an array"))
            return
        container = getattr(message, fd.name)
        for index, item in enumerate(value):
            item_path = f"{path}.{index}"
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                _convert_message(item, container.add(), item_path, violations, options)
            else:
                converted = _scalar(fd, item, item_path, violations, options)
                if converted is not _INVALID:
                    container.append(converted)
            value[index] = None
        return
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        _convert_message(value, getattr(message, fd.name), path, violations, options)
        return
    converted = _scalar(fd, value, path, violations, options)
    if converted is not _INVALID:
        setattr(message, fd.name, converted)


def _is_value_type(fd: FieldDescriptor) -> bool:
    return fd.message_type is not None and fd.message_type.full_name == "google.protobuf.Value"


def _convert_message(
    value: Any, target: Message, path: str, violations: list[Violation], options: JsonOptions
) -> None:
    if target.DESCRIPTOR.file.package == WELL_KNOWN_PACKAGE:
        # Well-known types have their own JSON forms; the library knows them.
        try:
            json_format.ParseDict(value, target)
        except json_format.ParseError as error:
            violations.append(Violation(path, "type", str(error)))
        return
    if not isinstance(value, dict):
        violations.append(Violation(path, "type", "must be an object"))
        return
    _merge_object(value, target, path, violations, options)


def _scalar(
    fd: FieldDescriptor,
    value: Any,
    path: str,
    violations: list[Violation],
    options: JsonOptions,
) -> Any:
    kind = fd.type
    if kind == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return value
    elif kind == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
    elif kind in INTEGER_RANGES:
        number = _integer(value, allow_text=kind in INT64_RANGES)
        if number is not None:
            low, high = INTEGER_RANGES[kind]
            if low <= number <= high:
                return number
            violations.append(Violation(path, "range", "is out of range"))
            return _INVALID
    elif kind in FLOAT_TYPES:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind == FieldDescriptor.TYPE_BYTES:
        if isinstance(value, str):
            try:
                return options.decode_bytes(value)
            except (ValueError, binascii.Error):
                violations.append(Violation(path, "base64", "must be valid base64"))
                return _INVALID
    elif kind == FieldDescriptor.TYPE_ENUM:
        number = _enum_number(fd.enum_type, value)
        if number is not None:
            return number
        violations.append(Violation(path, "enum", f"must be one of {_enum_names(fd.enum_type)}"))
        return _INVALID
    violations.append(Violation(path, "type", f"must be {_type_name(fd)}"))
    return _INVALID


def _integer(value: Any, *, allow_text: bool) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if allow_text and isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    return None


def _enum_number(enum: EnumDescriptor, value: Any) -> int | None:
    if isinstance(value, str) and value in enum.values_by_name:
        return enum.values_by_name[value].number
    if isinstance(value, int) and not isinstance(value, bool) and value in enum.values_by_number:
        return value
    return None


def _enum_names(enum: EnumDescriptor) -> str:
    return ", ".join(value.name for value in enum.values)


def _type_name(fd: FieldDescriptor) -> str:
    kind = fd.type
    if kind == FieldDescriptor.TYPE_STRING:
        return "a string"
    if kind == FieldDescriptor.TYPE_BOOL:
        return "a boolean"
    if kind in INTEGER_RANGES:
        return "an integer"
    if kind in FLOAT_TYPES:
        return "a number"
    if kind == FieldDescriptor.TYPE_BYTES:
        return "a base64 string"
    if kind == FieldDescriptor.TYPE_ENUM:
        return f"one of {_enum_names(fd.enum_type)}"
    return "an object"
