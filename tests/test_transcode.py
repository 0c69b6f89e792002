"""Annotation-driven transcoding, on the real contract and on a descriptor made here."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from gateway.contract import FILE_DESCRIPTORS
from gateway.json_options import JsonOptions
from gateway.json_reader import TranscodeError, build_request
from gateway.json_writer import message_to_json
from gateway.routes import PathTemplate, Route, discover_routes


def test_routes_come_from_the_contract_annotations() -> None:
    routes = {
        (r.http_method, r.path.template): r.full_method for r in discover_routes(FILE_DESCRIPTORS)
    }
    assert routes[("GET", "/api/c2c/health")] == "/c2c.v1.ContactAssets/Health"
    # Every annotated method of every service is routed, and nothing else.
    annotated = {
        f"/{service.full_name}/{method.name}"
        for file in FILE_DESCRIPTORS
        for service in file.services_by_name.values()
        for method in service.methods
        if method.GetOptions().HasExtension(annotations_pb2.http)
    }
    assert set(routes.values()) == annotated


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/api/contacts/get/{id}", "/api/contacts/get/42", {"id": "42"}),
        ("/api/contacts/get/{id}", "/api/contacts/get/42/x", None),
        ("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books/2", {"name": "shelves/1/books/2"}),
        ("/v1/{contact.id}/x", "/v1/abc/x", {"contact.id": "abc"}),
        ("/files/{path=**}", "/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        # `*` took a newline and `**` did not (found by tests/test_properties_routes.py).
        ("/files/{path=**}", "/files/a\nb/c", {"path": "a\nb/c"}),
        ("/api/v1/files/upload/", "/api/v1/files/upload/", {}),
        ("/api/v1/files/upload/", "/api/v1/files/upload", None),
        ("/v1/things/{id}:cancel", "/v1/things/7:cancel", {"id": "7"}),
    ],
)
def test_path_templates(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert PathTemplate.parse(template).match(path) == expected


def _test_file() -> descriptor_pb2.FileDescriptorProto:
    """A service with every kind of field, built as a descriptor (no protoc needed)."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="transcode_test.proto",
        package="tt.v1",
        syntax="proto3",
        dependency=["google/api/annotations.proto"],
    )
    item = file.message_type.add(name="Item")
    item.field.add(
        name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL, json_name="Name"
    )
    item.field.add(
        name="content", number=2, type=F.TYPE_BYTES, label=F.LABEL_OPTIONAL, json_name="Content"
    )
    request = file.message_type.add(name="PutRequest")
    request.field.add(
        name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL, json_name="Id"
    )
    request.field.add(
        name="count", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL, json_name="Count"
    )
    request.field.add(
        name="flag", number=3, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL, json_name="Flag"
    )
    request.field.add(
        name="items",
        number=4,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".tt.v1.Item",
        json_name="Items",
    )
    request.field.add(
        name="big", number=5, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL, json_name="Big"
    )
    entry = request.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    request.field.add(
        name="labels",
        number=6,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".tt.v1.PutRequest.LabelsEntry",
        json_name="Labels",
    )
    service = file.service.add(name="Things")
    method = service.method.add(
        name="Put", input_type=".tt.v1.PutRequest", output_type=".tt.v1.Item"
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(
        http_pb2.HttpRule(post="/things/{id}", body="*")
    )
    get = service.method.add(name="Get", input_type=".tt.v1.PutRequest", output_type=".tt.v1.Item")
    get.options.Extensions[annotations_pb2.http].CopyFrom(http_pb2.HttpRule(get="/things/{id}"))
    return file


@pytest.fixture(scope="module")
def routes() -> dict[str, Route]:
    pool = descriptor_pool.DescriptorPool()
    for dependency in (descriptor_pb2, http_pb2, annotations_pb2):
        pool.AddSerializedFile(dependency.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(_test_file().SerializeToString())
    found = {
        r.method.name: r for r in discover_routes([pool.FindFileByName("transcode_test.proto")])
    }
    assert message_factory.GetMessageClass(found["Put"].method.input_type)
    return found


def test_body_path_and_query_merge(routes: dict[str, Route]) -> None:
    body = {
        "Count": 3,
        "Flag": True,
        "Items": [{"Name": "a", "Content": "aGk="}],
        "Labels": {"k": "v"},
        "Big": "9007199254740993",
        "Unknown": 1,
    }
    message = build_request(routes["Put"], {"id": "x1"}, [], body, JsonOptions())
    assert message.id == "x1" and message.count == 3 and message.flag
    assert message.items[0].content == b"hi" and dict(message.labels) == {"k": "v"}
    assert message.big == 9007199254740993
    get = build_request(
        routes["Get"],
        {"id": "x2"},
        [("Count", "7"), ("flag", "true"), ("zz", "1")],
        None,
        JsonOptions(),
    )
    assert (get.id, get.count, get.flag) == ("x2", 7, True)


def test_type_errors_are_reported_with_their_paths(routes: dict[str, Route]) -> None:
    body = {
        "Count": "three",
        "Flag": 1,
        "Items": [{"Name": 5}, "x", {"Content": "!!"}],
        "Labels": [],
        "Unknown": 1,
    }
    with pytest.raises(TranscodeError) as caught:
        build_request(
            routes["Put"], {"id": "x"}, [], body, JsonOptions(ignore_unknown_fields=False)
        )
    assert [(v.field, v.kind) for v in caught.value.violations] == [
        ("Count", "type"),
        ("Flag", "type"),
        ("Items.0.Name", "type"),
        ("Items.1", "type"),
        ("Items.2.Content", "base64"),
        ("Labels", "type"),
        ("Unknown", "unknown_field"),
    ]
    with pytest.raises(TranscodeError) as caught:
        build_request(routes["Put"], {"id": "x"}, [], ["not", "an", "object"], JsonOptions())
    assert [(v.field, v.message) for v in caught.value.violations] == [("", "must be an object")]
    with pytest.raises(TranscodeError):
        build_request(routes["Get"], {"id": "x"}, [("Count", "2147483648")], None, JsonOptions())


def test_proto_names_and_defaults_in_responses(routes: dict[str, Route]) -> None:
    message = build_request(
        routes["Put"], {"id": "x"}, [], {"count": 0}, JsonOptions(use_json_names=False)
    )
    assert message_to_json(message, JsonOptions(use_json_names=False)) == {
        "id": "x",
        "count": 0,
        "flag": False,
        "items": [],
        "big": "0",
        "labels": {},
    }


def test_response_json_matches_the_protobuf_library(routes: dict[str, Route]) -> None:
    from google.protobuf import json_format

    body = {
        "Count": -3,
        "Flag": True,
        "Items": [{"Name": "a", "Content": "aGk="}, {}],
        "Labels": {"k": "v", "x": ""},
        "Big": "-9007199254740993",
    }
    message = build_request(routes["Put"], {"id": "x1"}, [], body, JsonOptions())
    for use_json_names in (True, False):
        expected = json_format.MessageToDict(
            message,
            always_print_fields_with_no_presence=True,
            preserving_proto_field_name=not use_json_names,
        )
        assert message_to_json(message, JsonOptions(use_json_names=use_json_names)) == expected


def test_quoted_numbers_are_read_and_broken_text_is_a_violation(routes: dict[str, Route]) -> None:
    # Proto3 JSON takes any integer quoted, and exponents for integral values.
    message = build_request(
        routes["Put"], {"id": "x"}, [], {"Count": "-3", "Big": "1e3"}, JsonOptions()
    )
    assert (message.count, message.big) == (-3, 1000)
    # An unpaired surrogate cannot be a proto string: a violation, not a crash.
    with pytest.raises(TranscodeError) as caught:
        build_request(
            routes["Put"], {"id": "x"}, [], {"Items": [{"Name": "\ud800"}]}, JsonOptions()
        )
    assert [(v.field, v.kind) for v in caught.value.violations] == [("Items.0.Name", "type")]
