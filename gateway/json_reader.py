"""JSON → request message: the reading half of the transcoder (grpc-gateway's unmarshaler).

`build_request` merges path variables, query parameters and the JSON body into the request
message an HttpRule describes; `json_to_message` reads a JSON value alone. On valid proto3
JSON the result is google.protobuf.json_format.ParseDict's (tests/test_json_conformance.py
holds it to that). On invalid input it differs on purpose: it does not stop at the first
problem but collects every one as a `Violation` at a dotted path (`files.0.content`), so a
surface can report them all in its own words; an unknown enum name is such a problem even
when unknown keys are ignored; and a float field refuses a number that float32 cannot hold
where the library would store infinity.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.json_options import (
    FLOAT_TYPES,
    INTEGER_RANGES,
    NULL_VALUE,
    WELL_KNOWN_PACKAGE,
    JsonOptions,
    decode_base64,
    enum_json_numbers,
    field_key,
    is_map,
)
from gateway.routes import Route, resolve

__all__ = ["TranscodeError", "Violation", "build_request", "decode_base64", "json_to_message"]


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
        _convert_message(body, message, "", violations, options)
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
        top = _fields_by_key(message.DESCRIPTOR).get(key.split(".")[0])
        if top is None or top.name in bound:
            continue  # query parameters the contract does not name are not ours
        _set_text(message, key, values, violations, options)
    if violations:
        raise TranscodeError(violations)
    return message


def json_to_message(data: Any, message_type: type[Message], options: JsonOptions) -> Message:
    """A message of `message_type` read from parsed JSON; raises TranscodeError listing
    every problem found. Consumes `data`: converted values are released as it goes."""
    message = message_type()
    violations: list[Violation] = []
    _convert_message(data, message, "", violations, options)
    if violations:
        raise TranscodeError(violations)
    return message


_keys: dict[Descriptor, dict[str, FieldDescriptor]] = {}


def _fields_by_key(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """Every JSON key a message's fields are read from: proto3 JSON parsers accept both
    the json_name and the proto field name, and (as json_format) the json_name first."""
    keys = _keys.get(descriptor)
    if keys is None:
        keys = dict(descriptor.fields_by_name.items())
        keys.update((fd.json_name, fd) for fd in descriptor.fields)
        _keys[descriptor] = keys
    return keys


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
        descriptor = _fields_by_key(target.DESCRIPTOR).get(part)
        if descriptor is None or descriptor.type != FieldDescriptor.TYPE_MESSAGE:
            violations.append(Violation(dotted, "unknown_field", "is not a known field"))
            return
        target = getattr(target, descriptor.name)
    descriptor = _fields_by_key(target.DESCRIPTOR).get(parts[-1])
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
        number = _enum_numbers(descriptor.enum_type).get(text)
        return number if number is not None else _INVALID
    if kind == FieldDescriptor.TYPE_BYTES:
        try:
            return decode_base64(text)
        except (ValueError, binascii.Error):
            return _INVALID
    return text if _is_utf8(text) else _INVALID


def _merge_object(
    data: dict[str, Any],
    message: Message,
    path: str,
    violations: list[Violation],
    options: JsonOptions,
) -> None:
    keys = _fields_by_key(message.DESCRIPTOR)
    for key in list(data):
        field_descriptor = keys.get(key)
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
    if value is None:
        # JSON null means "not set", except where null is itself a value.
        if fd.is_repeated:
            return
        if fd.enum_type is not None and fd.enum_type.full_name == NULL_VALUE:
            setattr(message, fd.name, 0)
            return
        if fd.message_type is None or fd.message_type.full_name != _VALUE:
            return
    if is_map(fd):
        if not isinstance(value, dict):
            violations.append(Violation(path, "type", "must be an object"))
            return
        container = getattr(message, fd.name)
        key_fd = fd.message_type.fields_by_name["key"]
        value_fd = fd.message_type.fields_by_name["value"]
        for key, item in value.items():
            key_value = _text_value(key_fd, key) if isinstance(key, str) else _INVALID
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
        target = getattr(message, fd.name)
        target.SetInParent()  # {} is an empty message, present (unlike null)
        _convert_message(value, target, path, violations, options)
        return
    converted = _scalar(fd, value, path, violations, options)
    if converted is not _INVALID:
        setattr(message, fd.name, converted)


_VALUE = "google.protobuf.Value"


def _convert_message(
    value: Any, target: Message, path: str, violations: list[Violation], options: JsonOptions
) -> None:
    if target.DESCRIPTOR.file.package == WELL_KNOWN_PACKAGE:
        # Well-known types have their own JSON forms; the library knows them.
        try:
            json_format.ParseDict(value, target)
        except json_format.ParseError as error:
            violations.append(Violation(path, "type", str(error)))
        except (ValueError, TypeError, AttributeError, KeyError):
            # The library trips over some shapes (an Any that is not an object…).
            name = target.DESCRIPTOR.full_name
            violations.append(Violation(path, "type", f"must be a {name} in JSON"))
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
            if _is_utf8(value):
                return value
            violations.append(Violation(path, "type", "must be valid Unicode text"))
            return _INVALID
    elif kind == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
    elif kind in INTEGER_RANGES:
        low, high = INTEGER_RANGES[kind]
        number = _integer(value, low, high)
        if number is _OUT_OF_RANGE:
            violations.append(Violation(path, "range", "is out of range"))
            return _INVALID
        if number is not None:
            return number
    elif kind in FLOAT_TYPES:
        limit = _FLOAT32_OVERFLOW if kind == FieldDescriptor.TYPE_FLOAT else math.inf
        number = _float(value, limit)
        if number is _OUT_OF_RANGE:
            violations.append(Violation(path, "range", "is out of range"))
            return _INVALID
        if number is not None:
            return number
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


_OUT_OF_RANGE: Any = object()
#: JSON numbers, which proto3 JSON also accepts quoted (`"12"`, `"1e3"`, `"-0.5"`).
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DIGITS = re.compile(r"-?[0-9]+")
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
#: Halfway between float32's largest value and 2**128: from here on a double rounds to
#: infinity as a float32 (below it, to at most FLT_MAX, whose shortest spelling
#: 3.4028235e+38 is itself a hair above FLT_MAX).
_FLOAT32_OVERFLOW = float.fromhex("0x1.ffffffp+127")


def _integer(value: Any, low: int, high: int) -> Any:
    """The integer a JSON number or numeric string means (`1e3` and `"1e3"` included),
    _OUT_OF_RANGE outside [low, high], None when it is no integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number: int | Decimal = value
    elif isinstance(value, float):
        if not value.is_integer():
            return None
        number = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    elif isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        number = Decimal(value)  # exact, and cheap even for "1e999999999"
        if number != number.to_integral_value():
            return None
    else:
        return None
    if not low <= number <= high:
        return _OUT_OF_RANGE
    return int(number)


def _float(value: Any, limit: float) -> Any:
    """The float a JSON number, numeric string or "NaN"/"Infinity"/"-Infinity" means;
    _OUT_OF_RANGE for a finite number whose magnitude reaches `limit` (or a double's),
    None when it is none of those."""
    if isinstance(value, float):
        number = value  # Python's JSON reader also yields inf and nan for its own literals
    elif isinstance(value, str):
        special = _SPECIAL_FLOATS.get(value)
        if special is not None:
            return special
        if not _NUMBER_TEXT.fullmatch(value):
            return None
        number = float(value)
        if math.isinf(number):  # "1e999"
            return _OUT_OF_RANGE
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond 1.8e308
            return _OUT_OF_RANGE
    else:
        return None
    if math.isfinite(number) and abs(number) >= limit:
        return _OUT_OF_RANGE
    return number


def _is_utf8(text: str) -> bool:
    """False for text holding an unpaired surrogate (JSON's "\ud800"), which a string
    field cannot hold."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _enum_number(enum: EnumDescriptor, value: Any) -> int | None:
    """The number of a value's name, or the number itself: any int32 for an open enum
    (proto3 keeps numbers it does not know), a declared one for a closed enum."""
    if isinstance(value, str):
        return _enum_numbers(enum).get(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    if value in enum.values_by_number:
        return value
    if not enum.is_closed and -(2**31) <= value < 2**31:
        return value
    return None


_enums: dict[EnumDescriptor, dict[str, int]] = {}


def _enum_numbers(enum: EnumDescriptor) -> dict[str, int]:
    numbers = _enums.get(enum)
    if numbers is None:
        numbers = _enums[enum] = enum_json_numbers(enum)
    return numbers


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
