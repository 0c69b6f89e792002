"""JSON text with its encoder built once.

`json.dumps` and `json.JSONEncoder.encode` build the C encoder anew on every call, reading
every option again; for a small document that is most of the cost, and every response
and every log line is encoded. `text_encoder` builds it once. Its values are trees (a
response's document, a log line's fields), so the encoder keeps no record of the
containers it is inside: a value that contains itself ends in RecursionError rather than
json's ValueError.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as json_encoder
from typing import Any


def text_encoder(
    *,
    ensure_ascii: bool = True,
    separators: tuple[str, str] = (", ", ": "),
    default: Callable[[Any], Any] | None = None,
) -> Callable[[Any], str]:
    """The text `json.JSONEncoder(ensure_ascii=…, separators=…, default=…).encode`
    writes, from an encoder made once."""
    python = json.JSONEncoder(ensure_ascii=ensure_ascii, separators=separators, default=default)
    make_encoder = json_encoder.c_make_encoder
    if make_encoder is None:  # an interpreter without the C accelerator
        return python.encode
    item_separator, key_separator = separators
    encode_chunks = make_encoder(
        None,  # no record of open containers (see above)
        python.default,
        json_encoder.encode_basestring_ascii if ensure_ascii else json_encoder.encode_basestring,
        None,  # indent
        key_separator,
        item_separator,
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )

    def encode(value: Any) -> str:
        return "".join(encode_chunks(value, 0))

    return encode
