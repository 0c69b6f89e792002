"""Properties of the S3 POST policy builder and checker (server/files/s3post/policy.py):
what build_form signs verifies, any one field changed is refused, and no form or policy
document, however hostile, raises anything but PolicyError (anything else is a 500)."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.files.s3post.policy import (
    PolicyError,
    build_form,
    v2_signature,
    v4_signature,
    verify_form,
)
from tests.test_s3_post_policy import BUCKET, CREDENTIALS, NOW, SECRETS

SETTINGS = settings(max_examples=150, deadline=None, database=None)

#: Field values and keys as a browser may send them: any text but surrogates.
_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_FIELD_NAMES = st.text(st.sampled_from("abcxyz-_"), min_size=1, max_size=8).map(
    lambda name: f"x-amz-meta-{name}"
)


@st.composite
def _built(draw: st.DrawFn) -> tuple[dict[str, str], str, int]:
    """(a form build_form signed, its key, its max size)."""
    key = draw(_TEXT.filter(lambda text: "${filename}" not in text))
    fields = draw(st.dictionaries(_FIELD_NAMES, _TEXT, max_size=3))
    max_bytes = draw(st.integers(0, 2**63))
    expires = timedelta(seconds=draw(st.integers(1, 7 * 86400)))
    return build_form(CREDENTIALS, BUCKET, key, fields, max_bytes, NOW, expires), key, max_bytes


# Catches: a builder and checker that disagree (the JSON the builder writes not read back,
# a field it signs but the checker treats as extra, Unicode keys mangled, the expiry
# written in a form the checker refuses).
@SETTINGS
@given(_built())
def test_every_form_build_form_signs_verifies(case: tuple[dict[str, str], str, int]) -> None:
    form, key, max_bytes = case
    accepted = verify_form(form, BUCKET, SECRETS, NOW)
    assert (accepted.key, accepted.min_bytes, accepted.max_bytes) == (key, 0, max_bytes)


# Catches: a field the signature or the policy does not pin down (a key, a metadata value,
# the date or the credential that could be changed after signing), and a form whose
# expiry is not enforced.
@SETTINGS
@given(_built(), st.data())
def test_any_single_field_changed_added_or_removed_is_refused(
    case: tuple[dict[str, str], str, int], data: st.DataObject
) -> None:
    form, _, _ = case
    tampered = dict(form)
    how = data.draw(st.sampled_from(["change", "extend", "remove", "add"]))
    if how == "add":
        name = data.draw(_FIELD_NAMES.filter(lambda name: name not in form) | st.just("acl"))
        tampered[name] = data.draw(_TEXT)
    else:
        name = data.draw(st.sampled_from(sorted(form)))
        if how == "remove":
            del tampered[name]
        elif how == "extend":  # an `eq` condition checked as `starts-with` lets this by
            tampered[name] += data.draw(_TEXT.filter(bool))
        else:
            tampered[name] = data.draw(_TEXT.filter(lambda text: text != form[name]))
    try:
        verify_form(tampered, BUCKET, SECRETS, NOW)
    except PolicyError:
        pass
    else:
        raise AssertionError(f"{how} {name!r} was not noticed")
    later = NOW + timedelta(days=8)
    try:
        verify_form(form, BUCKET, SECRETS, later)
    except PolicyError as error:
        assert error.code == "AccessDenied"
    else:
        raise AssertionError("an expired form was accepted")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _TEXT
    | st.sampled_from(["eq", "starts-with", "content-length-range", "$key", "$bucket",
                       "2026-11-26T12:01:00Z", "2026-13-45T99:99:99Z", "9999-12-31T23:59:59Z"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        _TEXT | st.sampled_from(["key", "bucket", "expiration", "conditions"]), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip
_EXPIRATIONS = (
    st.datetimes(timezones=st.just(UTC)).map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"))
    | st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z", fullmatch=True)
    | _JSON
)
_POLICIES = st.one_of(
    _JSON,
    st.fixed_dictionaries(
        {"expiration": _EXPIRATIONS, "conditions": st.lists(_JSON, max_size=4)},
        optional={"other": _JSON},
    ),
)


def _sign(document: bytes, v2: bool, extra: dict[str, str]) -> dict[str, str]:
    encoded = base64.b64encode(document).decode()
    if v2:
        signature = v2_signature(CREDENTIALS.secret_access_key, encoded)
        return {"key": "k", "policy": encoded, "signature": signature,
                "awsaccesskeyid": CREDENTIALS.access_key_id, **extra}  # fmt: skip
    day, region = "20261126", CREDENTIALS.region
    return {
        "key": "k",
        "policy": encoded,
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": f"{CREDENTIALS.access_key_id}/{day}/{region}/s3/aws4_request",
        "x-amz-date": f"{day}T120000Z",
        "x-amz-signature": v4_signature(CREDENTIALS.secret_access_key, day, region, encoded),
        **extra,
    }


# Catches: a correctly signed but malformed policy document raising ValueError, TypeError,
# KeyError… (a 500) instead of InvalidPolicyDocument: an impossible date that matches the
# expiration pattern, a condition of the wrong shape, a non-object document.
@SETTINGS
@given(
    _POLICIES,
    st.booleans(),
    st.dictionaries(st.sampled_from(["key", "bucket", "x-ignore-a"]), _TEXT),
)
def test_any_signed_policy_document_is_accepted_or_refused_with_policy_error(
    document: Any, v2: bool, extra: dict[str, str]
) -> None:
    form = _sign(json.dumps(document).encode(), v2, extra)
    try:
        verify_form(form, BUCKET, SECRETS, NOW, filename="f")
    except PolicyError as error:
        assert error.status in (400, 403)


# Catches: hostile form text (a non-ASCII policy, a credential with too few parts, a
# signature that is not hex) raising anything but PolicyError before the signature check.
@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "key",
                "policy",
                "x-amz-algorithm",
                "x-amz-credential",
                "x-amz-date",
                "x-amz-signature",
                "signature",
                "awsaccesskeyid",
            ]
        ),
        _TEXT
        | st.sampled_from(
            [
                "AWS4-HMAC-SHA256",
                "AKIDEXAMPLE",
                f"AKIDEXAMPLE/20261126/{CREDENTIALS.region}/s3/aws4_request",
                "e30=",
            ]
        ),
    )
)
def test_any_form_is_accepted_or_refused_with_policy_error(form: dict[str, str]) -> None:
    with contextlib.suppress(PolicyError):
        verify_form(form, BUCKET, SECRETS, NOW)
