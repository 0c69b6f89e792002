"""OpenAPI 3.1 descriptions of the surfaces, generated from the contract.

Paths, methods and body selectors come from the `google.api.http` annotations
(gateway.routes), schemas from the message descriptors written as each surface writes
JSON (its `json_options`), texts from the proto comments, and the rest — statuses, error
envelopes, headers, security — from each surface's `description` (gateway.surfaces).
`make proto` writes them to generated/openapi/; the gateway serves the same documents.

Run as `python -m gateway.openapi DIR` to write `DIR/{surface}.json` and `DIR/all.json`.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

from gateway.contract import FILE_DESCRIPTORS, source_comments
from gateway.json_options import field_key, is_map
from gateway.routes import Route, discover_routes
from gateway.surfaces import default_surfaces
from gateway.surfaces.base import ApiDescription, Surface

OPENAPI_VERSION = "3.1.0"
Schema = dict[str, Any]

_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
# Proto3 JSON writes 64-bit integers as strings and reads either form.
_INT64 = {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": r"^-?[0-9]+$"}]}
_UINT64 = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^[0-9]+$"}]}
_FLOAT = {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}
_SCALARS: Mapping[int, Schema] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_FLOAT: _FLOAT,
    FieldDescriptor.TYPE_DOUBLE: _FLOAT,
}
#: The well-known types' own JSON forms.
_WELL_KNOWN: Mapping[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Value": {},
    # Written as the message it holds (voyzu writes a background result as its route would).
    "google.protobuf.Any": {},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
    "google.protobuf.Int32Value": _INT32,
    "google.protobuf.UInt32Value": _UINT32,
    "google.protobuf.Int64Value": _INT64,
    "google.protobuf.UInt64Value": _UINT64,
    "google.protobuf.FloatValue": _FLOAT,
    "google.protobuf.DoubleValue": _FLOAT,
}
_HTTP_BODY = "google.api.HttpBody"
JSON = "application/json"
_BYTES = {"schema": {"type": "string", "format": "binary"}}


class _Document:
    """One description under construction: the component schemas it references."""

    def __init__(self, surface: Surface, description: ApiDescription) -> None:
        self.surface = surface
        self.about = description
        self.use_json_names = surface.json_options.use_json_names
        self.schemas: dict[str, Schema] = {}

    # -- schemas -------------------------------------------------------------------------

    def message_ref(self, descriptor: Descriptor) -> Schema:
        """A schema for a message: well-known types inline, the rest as components."""
        if descriptor.full_name in _WELL_KNOWN:
            return copy.deepcopy(_WELL_KNOWN[descriptor.full_name])
        name = descriptor.full_name
        if name not in self.schemas:
            self.schemas[name] = {}  # placed first: recursive messages refer to it
            self.schemas[name] = self.message_schema(descriptor)
        return {"$ref": f"#/components/schemas/{name}"}

    def message_schema(self, descriptor: Descriptor, without: Iterable[str] = ()) -> Schema:
        skipped = set(without)
        properties = {
            field_key(field, self.use_json_names): self.field_schema(field)
            for field in descriptor.fields
            if field.name not in skipped
        }
        properties.update(copy.deepcopy(self.about.extra_properties.get(descriptor.full_name, {})))
        schema: Schema = {"type": "object", "properties": properties}
        text = _comment(descriptor.file, descriptor.full_name)
        if text:
            schema["description"] = text
        return schema

    def field_schema(self, field: FieldDescriptor) -> Schema:
        if is_map(field):
            value = field.message_type.fields_by_name["value"]
            schema: Schema = {"type": "object", "additionalProperties": self.value_schema(value)}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.value_schema(field)}
        else:
            schema = self.value_schema(field)
        text = _comment(field.containing_type.file, field.full_name)
        if text:
            schema = {**schema, "description": text}
        return schema

    def value_schema(self, field: FieldDescriptor) -> Schema:
        if field.message_type is not None:
            return self.message_ref(field.message_type)
        if field.enum_type is not None:
            names = [value.name for value in field.enum_type.values]
            return {"anyOf": [{"type": "string", "enum": names}, _INT32]}
        return copy.deepcopy(_SCALARS[field.type])

    # -- operations ----------------------------------------------------------------------

    def operation(self, route: Route, operation_id: str) -> Schema:
        request = route.request_type.DESCRIPTOR
        bound = {path.split(".")[0] for path in route.path.variables.values()}
        parameters = [
            {
                "name": field_path,
                "in": "path",
                "required": True,
                "schema": self.value_schema(_field(request, field_path)),
            }
            for field_path in route.path.variables.values()
        ]
        parameters += self.query_parameters(route, bound)
        if route.full_method in self.about.async_methods:
            parameters.append(
                {
                    "name": "async",
                    "in": "query",
                    "description": "`true`: run in the background; poll the RequestId.",
                    "schema": {"type": "string", "enum": ["true", "false"]},
                }
            )
        parameters += [dict(header) for header in self.about.headers]
        operation: Schema = {
            "operationId": operation_id,
            "tags": [route.method.containing_service.name],
            "summary": route.method.name,
        }
        text = _comment(route.method.containing_service.file, route.method.full_name)
        if text:
            operation["description"] = text
        if parameters:
            operation["parameters"] = parameters
        if route.body:
            operation["requestBody"] = self.request_body(route, bound)
        operation["responses"] = self.responses(route)
        if route.full_method in self.about.public_methods:
            operation["security"] = []
        return operation

    def query_parameters(self, route: Route, bound: set[str]) -> list[Schema]:
        """The request's top-level scalar fields that neither the path nor the body fills."""
        if route.body == "*":
            return []
        parameters = []
        for field in route.request_type.DESCRIPTOR.fields:
            if field.name in bound or field.name == route.body or field.message_type:
                continue
            schema = self.field_schema(field)
            parameters.append(
                {"name": field_key(field, self.use_json_names), "in": "query", "schema": schema}
            )
        return parameters

    def request_body(self, route: Route, bound: set[str]) -> Schema:
        request = route.request_type.DESCRIPTOR
        if route.body == "*":
            schema = self.message_schema(request, without=bound)
        else:
            schema = self.field_schema(_field(request, route.body))
        return {"required": True, "content": {self.about.body_media_type: {"schema": schema}}}

    def responses(self, route: Route) -> Schema:
        success = str(self.about.success_statuses.get(route.full_method, 200))
        responses: Schema = {success: self.success_response(route)}
        for status in sorted(self.about.error_statuses):
            key: int | str = status if status in self.about.error_schemas else "default"
            name = f"{self.surface.name}.Error" + ("" if key == "default" else str(key))
            self.schemas[name] = copy.deepcopy(dict(self.about.error_schemas[key]))
            responses[str(status)] = {
                "description": _phrase(status),
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                },
            }
        return responses

    def success_response(self, route: Route) -> Schema:
        response = route.response_type.DESCRIPTOR
        text = _comment(response.file, response.full_name) or "Done."
        content: Schema = {}
        if route.response_body:
            field = _field(response, route.response_body)
            if field.message_type is not None and field.message_type.full_name == _HTTP_BODY:
                content["*/*"] = _BYTES
            else:
                content[JSON] = {"schema": self.field_schema(field)}
        elif response.full_name == _HTTP_BODY:
            content["*/*"] = _BYTES
        else:
            content[JSON] = {"schema": self.message_ref(response)}
        if route.full_method in self.about.async_methods:
            pool = route.method.containing_service.file.pool
            started = self.message_ref(pool.FindMessageTypeByName(self.about.async_response))
            answered = content.get(JSON)
            content[JSON] = {
                "schema": {"anyOf": [answered["schema"], started]} if answered else started
            }
        return {"description": text, "content": copy.deepcopy(content)}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # voyzu's own 540 and 541
        return {540: "Domain error", 541: "Routing failure"}.get(status, "Error")


def _field(message: Descriptor, selector: str) -> FieldDescriptor:
    """The field a dotted selector (`contact.id`) names."""
    *parents, leaf = selector.split(".")
    for name in parents:
        message = message.fields_by_name[name].message_type
    return message.fields_by_name[leaf]


def _comment(file: FileDescriptor, full_name: str) -> str:
    if file not in FILE_DESCRIPTORS:
        return ""
    stem = Path(file.name).stem
    return source_comments(file.package, stem).get(full_name, "")


def describe(surface: Surface, routes: Sequence[Route] | None = None) -> dict[str, Any]:
    """The OpenAPI document of one surface."""
    about = surface.description
    if about is None:
        raise ValueError(f"surface {surface.name} has no description")
    document = _Document(surface, about)
    all_routes = discover_routes(FILE_DESCRIPTORS) if routes is None else routes
    paths: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    services = set()
    for route in all_routes:
        if route.service not in surface.services:
            continue
        services.add(route.method.containing_service)
        seen[route.method.name] = seen.get(route.method.name, 0) + 1
        count = seen[route.method.name]
        operation_id = route.method.name + (f"_{count}" if count > 1 else "")
        item = paths.setdefault(openapi_path(route), {})
        item[route.http_method.lower()] = document.operation(route, operation_id)
    for path, item in about.extra_paths.items():
        paths[path] = copy.deepcopy(dict(item))
    texts = [_comment(service.file, service.full_name) for service in services]
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": about.title,
            "version": about.version,
            "description": " ".join(text for text in sorted(texts) if text),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(document.schemas.items())),
            "securitySchemes": copy.deepcopy(dict(about.security_schemes)),
        },
        "security": [{name: []} for name in about.security],
    }


def openapi_path(route: Route) -> str:
    """The route's template with `{field=pattern}` variables as OpenAPI's `{field}`."""
    template = route.path.template
    for field_path in route.path.variables.values():
        start = template.index("{" + field_path)
        template = (
            template[:start] + "{" + field_path + "}" + template[template.index("}", start) + 1 :]
        )
    return template


def describe_all(surfaces: Sequence[Surface]) -> dict[str, dict[str, Any]]:
    """Each described surface's document by name, and `all`: every surface in one (their
    schema and scheme names do not collide; each operation keeps its own security)."""
    routes = discover_routes(FILE_DESCRIPTORS)
    documents = {
        surface.name: describe(surface, routes)
        for surface in surfaces
        if surface.description is not None
    }
    combined: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "crmgate",
            "version": "v1",
            "description": "Every surface crmgate serves: "
            + ", ".join(doc["info"]["title"] for doc in documents.values())
            + ".",
        },
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": {}},
    }
    for document in documents.values():
        for path, item in document["paths"].items():
            combined["paths"][path] = {
                method: {"security": document["security"], **operation}
                for method, operation in item.items()
            }
        for part in ("schemas", "securitySchemes"):
            combined["components"][part].update(document["components"][part])
    combined["paths"] = dict(sorted(combined["paths"].items()))
    return {**documents, "all": combined}


def dump(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str]) -> int:
    target = Path(argv[0])
    target.mkdir(parents=True, exist_ok=True)
    for name, document in describe_all(default_surfaces()).items():
        (target / f"{name}.json").write_text(dump(document))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
