"""HTTP/JSON ↔ protobuf transcoding driven by `google.api.http` annotations.

Like grpc-gateway or Envoy's transcoder: routes come from the compiled descriptors,
path variables, query parameters and the JSON body are merged into the request message,
and the response message is written back as JSON. Nothing here knows any one surface;
the few choices a surface makes (JSON names, unknown fields, how bytes are encoded) come
in through `JsonOptions`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
    MethodDescriptor,
)
from google.protobuf.message import Message

_INT32_TYPES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}
_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOAT_TYPES = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}
_HTTP_BODY = "google.api.HttpBody"


# ---------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class PathTemplate:
    """A parsed HttpRule path template such as `/api/contacts/get/{id}`."""

    template: str
    regex: re.Pattern[str]
    #: regex group name → request field path (`contact.id`)
    variables: Mapping[str, str]
    literal_segments: int

    @classmethod
    def parse(cls, template: str) -> PathTemplate:
        if not template.startswith("/"):
            raise ValueError(f"path template must start with '/': {template!r}")
        variables: dict[str, str] = {}
        pattern: list[str] = []
        literals = 0
        position = 0
        for match in _VARIABLE.finditer(template):
            literal = template[position : match.start()]
            literals += sum(1 for part in literal.split("/") if part and part not in ("*", "**"))
            pattern.append(_segments_regex(literal))
            group = f"v{len(variables)}"
            variables[group] = match.group(1).strip()
            pattern.append(f"(?P<{group}>{_segments_regex(match.group(2) or '*')})")
            position = match.end()
        rest = template[position:]
        literals += sum(1 for part in rest.split("/") if part and part not in ("*", "**"))
        pattern.append(_segments_regex(rest))
        return cls(template, re.compile("".join(pattern) + r"\Z"), variables, literals)

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        return self.field_values(found.groupdict())

    def field_values(self, groups: Mapping[str, str]) -> dict[str, str]:
        """Regex group values (`v0`, `v1`, …) keyed by the request fields they fill."""
        return {self.variables[name]: value for name, value in groups.items()}

    def router_path(self) -> str:
        """The template in aiohttp's `{name:regex}` route syntax, with the same groups."""
        parts = []
        position = 0
        for index, match in enumerate(_VARIABLE.finditer(self.template)):
            parts.append(self.template[position : match.start()])
            parts.append(f"{{v{index}:{_segments_regex(match.group(2) or '*')}}}")
            position = match.end()
        parts.append(self.template[position:])
        return "".join(parts)


_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


def _segments_regex(text: str) -> str:
    parts = []
    for piece in re.split(r"(\*\*|\*)", text):
        if piece == "**":
            parts.append(r".+")
        elif piece == "*":
            parts.append(r"[^/]+")
        else:
            parts.append(re.escape(piece))
    return "".join(parts)


@dataclass(frozen=True)
class Route:
    """One HTTP binding of one RPC method."""

    http_method: str
    path: PathTemplate
    method: MethodDescriptor
    body: str
    response_body: str
    request_type: type[Message]
    response_type: type[Message]

    @cached_property
    def full_method(self) -> str:
        """The gRPC method path, `/package.Service/Method`."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @cached_property
    def service(self) -> str:
        return self.method.containing_service.full_name


def discover_routes(files: Iterable[FileDescriptor]) -> list[Route]:
    """Every HTTP binding annotated on every method of the given files' services,
    most specific first (more literal segments win over variables)."""
    routes: list[Route] = []
    for file in files:
        for service in file.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(annotations_pb2.http):
                    continue
                rule = options.Extensions[annotations_pb2.http]
                for binding in (rule, *rule.additional_bindings):
                    routes.append(_route(method, binding))
    routes.sort(key=lambda route: (-route.path.literal_segments, route.path.template))
    return routes


def _route(method: MethodDescriptor, rule: http_pb2.HttpRule) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise ValueError(f"{method.full_name}: google.api.http has no pattern")
    if kind == "custom":
        verb, template = rule.custom.kind.upper(), rule.custom.path
    else:
        verb, template = kind.upper(), getattr(rule, kind)
    return Route(
        http_method=verb,
        path=PathTemplate.parse(template),
        method=method,
        body=rule.body,
        response_body=rule.response_body,
        request_type=message_factory.GetMessageClass(method.input_type),
        response_type=message_factory.GetMessageClass(method.output_type),
    )


# ------------------------------------------------------------------- JSON → message


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


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (what proto3 JSON accepts)."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


@dataclass(frozen=True)
class JsonOptions:
    """How one surface spells its JSON."""

    #: Field names as `json_name` (True) or as written in the .proto (False).
    use_json_names: bool = True
    #: Whether keys the message does not know are dropped (True) or rejected (False).
    ignore_unknown_fields: bool = True
    #: How a JSON string becomes a `bytes` field; raises ValueError when it cannot.
    decode_bytes: Callable[[str], bytes] = field(default=decode_base64)


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
        target, leaf = _resolve(message, route.body)
        leaf_field = target.DESCRIPTOR.fields_by_name[leaf]
        _set_field(target, leaf_field, body, _label(leaf_field, options), violations, options)
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


def _label(field_descriptor: FieldDescriptor, options: JsonOptions) -> str:
    return field_descriptor.json_name if options.use_json_names else field_descriptor.name


def _field_for_key(descriptor: Descriptor, key: str) -> FieldDescriptor | None:
    """Proto3 JSON parsers accept both the json_name and the proto field name."""
    found = descriptor.fields_by_name.get(key)
    if found is not None:
        return found
    for candidate in descriptor.fields:
        if candidate.json_name == key:
            return candidate
    return None


def _resolve(message: Message, dotted: str) -> tuple[Message, str]:
    *parents, leaf = dotted.split(".")
    for name in parents:
        message = getattr(message, name)
    return message, leaf


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
        if kind in _INT32_TYPES or kind in _INT64_TYPES:
            low, high = {**_INT32_TYPES, **_INT64_TYPES}[kind]
            number = int(text)
            return number if low <= number <= high else _INVALID
        if kind in _FLOAT_TYPES:
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
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
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
    if target.DESCRIPTOR.file.package == "google.protobuf":
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
    elif kind in _INT32_TYPES or kind in _INT64_TYPES:
        number = _integer(value, allow_text=kind in _INT64_TYPES)
        if number is not None:
            low, high = {**_INT32_TYPES, **_INT64_TYPES}[kind]
            if low <= number <= high:
                return number
            violations.append(Violation(path, "range", "is out of range"))
            return _INVALID
    elif kind in _FLOAT_TYPES:
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
    if kind in _INT32_TYPES or kind in _INT64_TYPES:
        return "an integer"
    if kind in _FLOAT_TYPES:
        return "a number"
    if kind == FieldDescriptor.TYPE_BYTES:
        return "a base64 string"
    if kind == FieldDescriptor.TYPE_ENUM:
        return f"one of {_enum_names(fd.enum_type)}"
    return "an object"


# ------------------------------------------------------------------- message → JSON


def response_payload(route: Route, message: Message, options: JsonOptions) -> Any:
    """The JSON value for a response: the whole message, or its `response_body` field."""
    if route.response_body:
        target, leaf = _resolve(message, route.response_body)
        fd = target.DESCRIPTOR.fields_by_name[leaf]
        return message_to_json(target, options).get(_label(fd, options))
    return message_to_json(message, options)


def message_to_json(message: Message, options: JsonOptions) -> dict[str, Any]:
    """Proto3 JSON for a message, printing fields without presence even when default.

    The same output as json_format.MessageToDict(always_print_fields_with_no_presence=True),
    from a per-type plan compiled once: the hot path (every response) skips the library's
    generic reflection.
    """
    return _writer(message.DESCRIPTOR, options.use_json_names)(message)


_Writer = Callable[[Message], dict[str, Any]]
_writers: dict[tuple[str, bool], _Writer] = {}


def _writer(descriptor: Descriptor, use_json_names: bool) -> _Writer:
    cache_key = (descriptor.full_name, use_json_names)
    writer = _writers.get(cache_key)
    if writer is not None:
        return writer
    if descriptor.file.package == "google.protobuf":
        # Well-known types have special JSON forms; the library knows them.
        def writer(message: Message) -> Any:
            return json_format.MessageToDict(
                message,
                always_print_fields_with_no_presence=True,
                preserving_proto_field_name=not use_json_names,
            )

        _writers[cache_key] = writer
        return writer
    plan = [
        (
            fd.name,
            fd.json_name if use_json_names else fd.name,
            fd.has_presence,
            _value_writer(fd, use_json_names),
        )
        for fd in descriptor.fields
    ]

    def writer(message: Message) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for name, key, has_presence, convert in plan:
            if has_presence and not message.HasField(name):
                continue
            document[key] = convert(getattr(message, name))
        return document

    _writers[cache_key] = writer
    return writer


def _value_writer(fd: FieldDescriptor, use_json_names: bool) -> Callable[[Any], Any]:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        value_fd = fd.message_type.fields_by_name["value"]
        convert_value = _single_writer(value_fd, use_json_names)
        return lambda container: {str(k): convert_value(v) for k, v in container.items()}
    convert = _single_writer(fd, use_json_names)
    if fd.is_repeated:
        return lambda container: [convert(item) for item in container]
    return convert


def _single_writer(fd: FieldDescriptor, use_json_names: bool) -> Callable[[Any], Any]:
    kind = fd.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        descriptor = fd.message_type
        return lambda value: _writer(descriptor, use_json_names)(value)
    if kind in _INT64_TYPES:
        return str
    if kind == FieldDescriptor.TYPE_BYTES:
        return lambda value: base64.b64encode(value).decode("ascii")
    if kind == FieldDescriptor.TYPE_ENUM:
        names = {value.number: value.name for value in fd.enum_type.values}
        return lambda value: names.get(value, value)
    if kind in _FLOAT_TYPES:
        return _float_json
    return _identity


def _identity(value: Any) -> Any:
    return value


def _float_json(value: float) -> Any:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def http_body(route: Route, message: Message) -> Message | None:
    """The google.api.HttpBody a method answers with (whole or as its response_body), if
    it answers with raw bytes rather than JSON."""
    if route.response_body:
        target, leaf = _resolve(message, route.response_body)
        message = getattr(target, leaf)
    return message if message.DESCRIPTOR.full_name == _HTTP_BODY else None
