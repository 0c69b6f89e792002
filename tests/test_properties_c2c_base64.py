"""Properties of the C2C upload content decoder (gateway/surfaces/c2c.decode_content, and
its streaming twin gateway/json_body.RawText.base64_chunks) against base64.b64decode and
the rule in /work/shared/reference/c2c-public-api-v1.txt: "File bytes base64-encoded.
Optional data URI prefix supported: data:...;base64,<payload> — only the segment after
the last comma is decoded." Whitespace in the payload is skipped as the reference
service's strict base64_decode does (space, tab, CR, LF), and nothing else is."""

from __future__ import annotations

import base64
import binascii
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.surfaces.c2c import decode_content
from tests.test_json_body import decoded as chunked  # (text, size): RawText's chunks, or None
from tests.test_json_body import whole as decoded  # decode_content(text), or None

SETTINGS = settings(max_examples=200, deadline=None, database=None)
WHITESPACE = " \t\r\n"


def reference(text: str) -> bytes | None:
    """What the documented rule decodes `text` to: None where it refuses."""
    if text.startswith("data:"):
        text = text.rsplit(",", 1)[-1]
    try:
        return base64.b64decode(re.sub(f"[{WHITESPACE}]", "", text), validate=True)
    except (ValueError, binascii.Error):
        return None


@st.composite
def _encoded(draw: st.DrawFn) -> tuple[bytes, str]:
    """(bytes, their base64 with whitespace anywhere, maybe behind a data URI prefix)."""
    data = draw(st.binary(max_size=64))
    text = base64.b64encode(data).decode()
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(st.sampled_from(WHITESPACE), min_size=1)) + text[at:]
    if draw(st.booleans()):
        # Anything may come before the last comma, commas and "base64" included.
        prefix = st.text(st.sampled_from("image/png;base64,= "), max_size=20) | st.text(max_size=9)
        text = "data:" + draw(prefix) + "," + text
    return data, text


# Catches: a data URI split at its first comma instead of the last, whitespace (a line-wrapped
# MIME payload) refused, the prefix decoded along with the payload.
@SETTINGS
@given(_encoded())
def test_any_encoding_of_bytes_decodes_to_them(case: tuple[bytes, str]) -> None:
    data, text = case
    assert decode_content(text) == data


# Catches: a decoder more lenient than base64 (characters outside the alphabet skipped,
# padding inside the payload, missing padding guessed, non-ASCII whitespace such as
# U+00A0 or U+2028 dropped) or stricter than it, and any exception but ValueError.
@SETTINGS
@given(
    st.text(st.sampled_from("AQZaqz09+/=-_ \t\r\n,:;\x0b\x0c\x1c\u00a0\u2028é"), max_size=24)
    | st.text(max_size=24)
    | st.builds("data:{},{}".format, st.text(max_size=8), st.text("QUJD=\n ,", max_size=12))
)
@example("QUJD\u00a0")
@example("QUJD\u2028")
@example("QUJD\x1c")
def test_decoding_accepts_exactly_what_base64_accepts(text: str) -> None:
    assert decoded(text) == reference(text)


# Catches: the chunked decoder (bodies of 64 KiB and more) accepting or refusing text the
# whole-string decoder does not: padding or a stray character at a chunk boundary, a data
# URI comma inside the first window, a space straddling two windows.
# (tests/test_json_body.py checks chunking on near-valid base64; this on any text a
# RawText can hold: printable ASCII without `"` and `\`.)
@SETTINGS
@given(
    st.text(st.sampled_from("AQZaz09+/= ,:;data!-_"), max_size=60)
    | _encoded()
    .map(lambda case: re.sub("[\t\r\n]", " ", case[1]))
    .filter(lambda text: re.fullmatch(r"[\x20-\x7e]*", text) and not re.search(r'["\\]', text)),
    st.integers(3, 12),  # the window is size // 3 * 4 characters: at least one group
)
def test_chunks_decode_any_printable_text_as_the_whole_string_does(text: str, size: int) -> None:
    assert chunked(text, size) == decoded(text)
