"""ES modules for voyzu's `/api/<resource>/class`, generated from the contract at runtime.

For each resource (the path segment after /api/), the classes are the messages its
endpoints take as body and give as response — with every message they contain — in
dependency order, each with a defaulting constructor, JSDoc types taken from the
.proto (comments included), `static fromJSON` and `toJSON`. Nothing is hand-written, so
the classes cannot drift from the contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib import resources

from crm.v1 import crm_pb2
from google.api import annotations_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

from gateway.contract import source_comments

_SKIPPED = {"google.api.HttpBody"}
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_NUMBERS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_FLOAT,
    FieldDescriptor.TYPE_DOUBLE,
}


def _field_type(message: Descriptor, path: str) -> Descriptor | None:
    field = message.fields_by_name.get(path) if path and path != "*" else None
    if field is None:
        return message if path in ("", "*") else None
    return field.message_type


def resource_messages(service: ServiceDescriptor) -> dict[str, list[Descriptor]]:
    """resource → the messages its endpoints take and give, in first-seen order."""
    found: dict[str, list[Descriptor]] = {}
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        rule = options.Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            path = getattr(binding, binding.WhichOneof("pattern"))
            resource = path.removeprefix("/api/").split("/")[0]
            if resource.startswith("{"):
                continue  # the /class route itself
            messages = found.setdefault(resource, [])
            body = _field_type(method.input_type, binding.body) if binding.body else None
            reply = _field_type(method.output_type, binding.response_body or "*")
            for message in (body, reply):
                if (
                    message is not None
                    and message.fields  # an empty reply means "no output class"
                    and message.full_name not in _SKIPPED
                    and message not in messages
                ):
                    messages.append(message)
    return found


def with_dependencies(messages: Iterable[Descriptor]) -> list[Descriptor]:
    """The messages and every message they contain, dependencies first."""
    ordered: list[Descriptor] = []

    def visit(message: Descriptor) -> None:
        if message in ordered or message.file.package.startswith("google.") or _is_map(message):
            return
        for field in message.fields:
            target = _value_field(field).message_type
            if target is not None and target is not message:
                visit(target)
        ordered.append(message)

    for message in messages:
        visit(message)
    return ordered


def _is_map(message: Descriptor) -> bool:
    return message.GetOptions().map_entry


def _value_field(field: FieldDescriptor) -> FieldDescriptor:
    if field.message_type is not None and _is_map(field.message_type):
        return field.message_type.fields_by_name["value"]
    return field


def _comments() -> dict[str, str]:
    """Leading comments of crm.proto's messages and fields, by full name."""
    return source_comments("crm.v1", "crm")


def _js_type(field: FieldDescriptor) -> str:
    if field.message_type is not None and _is_map(field.message_type):
        return f"Object<string, {_js_type(field.message_type.fields_by_name['value'])}>"
    base = _scalar_type(field)
    return f"{base}[]" if field.is_repeated else base


def _scalar_type(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.file.package.startswith("google."):
            return "Object"
        return field.message_type.name
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "boolean"
    if field.type in _NUMBERS:
        return "number"
    return "string"  # strings, bytes (base64), enums (by name), 64-bit integers


def _default(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "false"
    if field.type in _NUMBERS:
        return "0"
    if field.type in _INT64:
        return '"0"'
    if field.type == FieldDescriptor.TYPE_ENUM:
        return json.dumps(field.enum_type.values[0].name)
    return '""'


def _is_class(field: FieldDescriptor) -> bool:
    target = _value_field(field).message_type
    return target is not None and not target.file.package.startswith("google.")


def _init(field: FieldDescriptor) -> str:
    key = f"init.{field.json_name}"
    value_field = _value_field(field)
    if value_field is not field:  # a map
        if _is_class(field):
            name = value_field.message_type.name
            return (
                f"Object.fromEntries(Object.entries({key} ?? {{}})"
                f".map(([k, v]) => [k, {name}.fromJSON(v)]))"
            )
        return f"{{ ...({key} ?? {{}}) }}"
    if field.is_repeated:
        if _is_class(field):
            return f"({key} ?? []).map((item) => {field.message_type.name}.fromJSON(item))"
        return f"[...({key} ?? [])]"
    if _is_class(field):
        return f"{key} == null ? null : {field.message_type.name}.fromJSON({key})"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return f"{key} ?? null"
    return f"{key} ?? {_default(field)}"


def _to_json(field: FieldDescriptor) -> str:
    value = f"this.{field.json_name}"
    if not _is_class(field):
        return value
    if _value_field(field) is not field:
        return f"Object.fromEntries(Object.entries({value}).map(([k, v]) => [k, toPlain(v)]))"
    if field.is_repeated:
        return f"{value}.map(toPlain)"
    return f"toPlain({value})"


def _doc(text: str, indent: str) -> list[str]:
    return [f"{indent}/** {text} */"] if text else []


def render_class(message: Descriptor) -> str:
    comments = _comments()
    name = message.name
    lines = [
        *_doc(comments.get(message.full_name, ""), ""),
        f"export class {name} {{",
        f"  /** @param {{Partial<{name}>}} [init] */",
        "  constructor(init = {}) {",
        "    // Properties the API sends beyond the contract (such as a poll's StatusCode)",
        "    // are kept as they are, and written back by toJSON.",
        "    Object.assign(this, init);",
    ]
    for field in message.fields:
        note = comments.get(f"{message.full_name}.{field.name}", "")
        type_ = _js_type(field) + (
            "|null"
            if field.type == FieldDescriptor.TYPE_MESSAGE
            and not field.is_repeated
            and not _is_map(field.message_type)
            else ""
        )
        lines.append(f"    /** @type {{{type_}}}{' ' + note if note else ''} */")
        lines.append(f"    this.{field.json_name} = {_init(field)};")
    lines += [
        "  }",
        "",
        f"  /** @param {{Object}} json @returns {{{name}}} */",
        f"  static fromJSON(json) {{ return new {name}(json ?? {{}}); }}",
        "",
        "  /** @returns {Object} the JSON the API takes and gives */",
        "  toJSON() {",
        "    return {",
        "      ...this,",
        *(f"      {field.json_name}: {_to_json(field)}," for field in message.fields),
        "    };",
        "  }",
        "}",
    ]
    return "\n".join(lines)


HEADER = (
    "// Generated from the crm.v1 contract by crmgate at request time. Do not edit.\n"
    "const toPlain = (value) =>\n"
    '  value !== null && typeof value === "object" && typeof value.toJSON === "function"\n'
    "    ? value.toJSON()\n"
    "    : value;\n"
)


def render_module(messages: Iterable[Descriptor], extra: str = "") -> str:
    classes = [render_class(message) for message in with_dependencies(messages)]
    return HEADER + "\n" + "\n\n".join(classes) + "\n" + (f"\n{extra}" if extra else "")


def module_for(resource: str) -> str | None:
    """The module for a resource, or None when the API has no such resource."""
    service = crm_pb2.DESCRIPTOR.services_by_name["Crm"]
    messages = resource_messages(service).get(resource)
    if messages is None:
        return None
    extra = ""
    if resource in ("request", "request-status"):
        extra = resources.files("server.crm").joinpath("request-poller.js").read_text()
    return render_module(messages, extra)
