"""S3 POST policy documents as Amazon S3 parses them (server/files/s3post/policy.py): each
case signs its own policy, so only the rule under test can refuse it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from server.files.s3post.policy import (
    Credentials,
    PolicyError,
    v2_signature,
    v4_signature,
    verify_form,
)

CREDENTIALS = Credentials("AKIDEXAMPLE", "secret-example", "us-east-1")
SECRETS = {CREDENTIALS.access_key_id: CREDENTIALS}
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
BUCKET = "crmgate-files"
#: The signature's own fields, which a policy must cover too.
SIGNATURE_FIELDS = [
    ["starts-with", f"${name}", ""]
    for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date")
]


def policy(expiration: Any = "2026-11-26T12:01:00.000Z", *conditions: Any) -> dict[str, Any]:
    return {
        "expiration": expiration,
        "conditions": [
            *(conditions or [{"bucket": BUCKET}, ["starts-with", "$key", "up/"]]),
            *SIGNATURE_FIELDS,
        ],
    }


def signed(document: dict[str, Any], *, day: str = "20261126", region: str = "us-east-1",
           date: str = "20261126T120000Z", **fields: str) -> dict[str, str]:  # fmt: skip
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return {
        "key": "up/a.txt",
        "policy": encoded,
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": f"AKIDEXAMPLE/{day}/{region}/s3/aws4_request",
        "x-amz-date": date,
        "x-amz-signature": v4_signature(CREDENTIALS.secret_access_key, day, region, encoded),
        **fields,
    }


def refusal(form: dict[str, str]) -> tuple[str, int, str]:
    with pytest.raises(PolicyError) as raised:
        verify_form(form, BUCKET, SECRETS, NOW)
    return raised.value.code, raised.value.status, raised.value.message


def accepted(form: dict[str, str]) -> tuple[str, int, int | None]:
    result = verify_form(form, BUCKET, SECRETS, NOW)
    return result.key, result.min_bytes, result.max_bytes


def test_a_plain_policy_is_accepted() -> None:
    assert accepted(signed(policy())) == ("up/a.txt", 0, None)


@pytest.mark.parametrize(
    "expiration",
    [1_900_000_000, None, ["2026-11-26T12:01:00.000Z"], "2026-11-26 12:01:00.123",
     "2026-11-26T12:01:00", "2026-11-26T12:01:00+00:00", "tomorrow",
     # The pattern's shape, but no real moment, or not ASCII digits (found by hypothesis).
     "2026-13-45T99:99:99Z", "0000-00-00T00:00:00Z", "\uff12026-11-26T12:01:00Z"],
)  # fmt: skip
def test_an_expiration_must_be_iso_8601_utc_text(expiration: Any) -> None:
    code, status, message = refusal(signed(policy(expiration)))
    assert (code, status) == ("InvalidPolicyDocument", 400)
    assert "expiration" in message


def test_operators_and_field_names_ignore_case() -> None:
    document = policy(
        "2026-11-26T12:01:00Z",
        {"bUcKeT": BUCKET},
        ["StArTs-WiTh", "$KeY", "up/"],
        ["EQ", "$X-Amz-Meta-Tag", "t"],
        ["Content-Length-Range", 1, 10],
    )
    assert accepted(signed(document, **{"x-amz-meta-tag": "t"})) == ("up/a.txt", 1, 10)


@pytest.mark.parametrize(
    "bounds", [[10, 1], [-1, 10], [0, -5], [0], [0, 1, 2], ["a", 1], [0, None]]
)
def test_a_content_length_range_needs_0_le_min_le_max(bounds: list[Any]) -> None:
    range_ = ["content-length-range", *bounds]
    document = policy("2026-11-26T12:01:00Z", {"bucket": BUCKET}, {"key": "up/a.txt"}, range_)
    assert refusal(signed(document))[:2] == ("InvalidPolicyDocument", 400)


def test_a_null_condition_value_matches_nothing() -> None:
    for condition in ({"key": None}, ["eq", "$key", None], ["starts-with", "$key", None]):
        document = policy("2026-11-26T12:01:00Z", {"bucket": BUCKET}, condition)  # type: ignore[arg-type]
        form = signed(document, key="None")
        assert refusal(form)[:2] == ("InvalidPolicyDocument", 400), condition


def test_a_v2_form_needs_its_access_key_id() -> None:
    document = {"expiration": "2026-11-26T12:01:00Z", "conditions": [["starts-with", "$key", ""]]}
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    form = {
        "key": "up/a.txt",
        "policy": encoded,
        "signature": v2_signature(CREDENTIALS.secret_access_key, encoded),
    }
    assert refusal(form) == (
        "InvalidArgument", 400, "Bucket POST must contain a field named 'AWSAccessKeyId'.",
    )  # fmt: skip
    assert accepted({**form, "awsaccesskeyid": "AKIDEXAMPLE"}) == ("up/a.txt", 0, None)


def test_the_credentials_date_and_region_must_match() -> None:
    wrong_region = signed(policy(), region="eu-west-1")
    assert refusal(wrong_region) == (
        "AuthorizationHeaderMalformed", 400, "The region 'eu-west-1' is wrong; expecting 'us-east-1'.",
    )  # fmt: skip
    wrong_day = signed(policy(), day="20261125")
    assert refusal(wrong_day) == (
        "InvalidArgument", 400, "x-amz-credential's date must be the day of x-amz-date.",
    )  # fmt: skip


def test_a_non_ascii_policy_is_a_signature_mismatch() -> None:
    """Found by hypothesis: the V4 signature encoded the policy as ASCII (a 500)."""
    form = {**signed(policy()), "policy": "\x80"}
    assert refusal(form)[:2] == ("SignatureDoesNotMatch", 403)


def test_a_deeply_nested_policy_is_invalid_json() -> None:
    form = signed(policy())
    deep = base64.b64encode(b"[" * 100_000).decode()
    day = "20261126"
    form = {**form, "policy": deep,
            "x-amz-signature": v4_signature(CREDENTIALS.secret_access_key, day, "us-east-1", deep)}  # fmt: skip
    assert refusal(form) == ("InvalidPolicyDocument", 400, "Invalid Policy: Invalid JSON.")
