"""Routes: which RPC method an HTTP request calls, read from `google.api.http` annotations.

The mux half of the transcoder (grpc-gateway's runtime.ServeMux): routes are discovered
from the compiled descriptors and matched by their HttpRule path templates. Nothing here
reads or writes JSON; `json_reader` and `json_writer` take a `Route` from here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor
from google.protobuf.message import Message


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
            parts.append(r"(?s:.+)")  # any rest of the path, a decoded newline too (as `*`)
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


def resolve(message: Message, selector: str) -> tuple[Message, str]:
    """The message holding the field an HttpRule `body`/`response_body` selector such as
    `contact.id` names, and that field's name (`(message.contact, "id")`)."""
    *parents, leaf = selector.split(".")
    for name in parents:
        message = getattr(message, name)
    return message, leaf
