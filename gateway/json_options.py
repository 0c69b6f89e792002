"""What the JSON reader and the JSON writer share: a surface's `JsonOptions` and the
proto3-JSON facts about field types that both directions need.

It is its own module so that the dependency direction stays one way: `json_reader` and
`json_writer` both import from here (and from `routes`), and neither imports the other.
`JsonOptions` lives here rather than in the reader because every surface hands the same
object to both directions; its default bytes decoder (`decode_base64`, the proto3-JSON
spelling of bytes) comes along because a dataclass default must exist where it is named.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor

#: The proto types written as JSON numbers (32-bit) or strings (64-bit), with their range.
INT32_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}
INT64_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
INTEGER_RANGES = {**INT32_RANGES, **INT64_RANGES}
FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE})
#: Messages of this package (Any, Value, Timestamp…) have JSON forms of their own, which
#: google.protobuf.json_format implements.
WELL_KNOWN_PACKAGE = "google.protobuf"
#: The enum whose one value is written, and read, as JSON null.
NULL_VALUE = "google.protobuf.NullValue"


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


def field_key(field_descriptor: FieldDescriptor, use_json_names: bool) -> str:
    """The JSON key a field is written under (see `JsonOptions.use_json_names`)."""
    return field_descriptor.json_name if use_json_names else field_descriptor.name


def is_map(field_descriptor: FieldDescriptor) -> bool:
    message_type = field_descriptor.message_type
    return message_type is not None and message_type.GetOptions().map_entry


def enum_json_names(enum: EnumDescriptor) -> dict[int, str]:
    """The JSON name of each number of an enum, as json_format writes it: the first value
    declared with that number (aliases share one), spelled as its
    `(pb.enumvalue.json).string` option says when that option's extension is loaded."""
    extension = _enum_json_extension()
    names = {}
    for number in {value.number for value in enum.values}:
        value = enum.values_by_number[number]
        options = value.GetOptions()
        if extension is not None and options.HasExtension(extension):
            names[number] = options.Extensions[extension].string
        else:
            names[number] = value.name
    return names


def enum_json_numbers(enum: EnumDescriptor) -> dict[str, int]:
    """The number of each JSON name json_format reads for an enum: every value's name, and
    its `(pb.enumvalue.json).string` where the option is set."""
    numbers = {value.name: value.number for value in enum.values}
    extension = _enum_json_extension()
    if extension is not None:
        for value in enum.values:
            options = value.GetOptions()
            if options.HasExtension(extension) and options.Extensions[extension].HasField("string"):
                numbers.setdefault(options.Extensions[extension].string, value.number)
    return numbers


def _enum_json_extension() -> Any:
    # Like json_format, only the default pool is searched: options live there.
    try:
        return descriptor_pool.Default().FindExtensionByName("pb.enumvalue.json")
    except KeyError:
        return None
