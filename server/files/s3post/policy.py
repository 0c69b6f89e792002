"""S3 POST policies: building and signing them (Signature V4), and checking a submitted
form against one (Signature V4 or V2), as Amazon S3 does.

Pure functions: no I/O, the clock passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

V4_ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"

#: A policy's expiration as S3 takes it: ISO 8601 in UTC, `Z` included.
EXPIRATION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z", re.ASCII)

#: Form fields a policy need not mention (S3's own list).
EXEMPT_FIELDS = frozenset({"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"})


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"


class PolicyError(Exception):
    """The form breaks S3's rules; `code` is S3's error code, `status` its HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def denied(message: str) -> PolicyError:
    return PolicyError("AccessDenied", message, 403)


def _hmac(key: bytes, text: str, digest: str = "sha256") -> bytes:
    return hmac.new(key, text.encode("utf-8"), digest).digest()


def v4_signature(secret: str, day: str, region: str, policy_b64: str) -> str:
    key = _hmac(("AWS4" + secret).encode("utf-8"), day)
    for part in (region, SERVICE, "aws4_request"):
        key = _hmac(key, part)
    # UTF-8, not ASCII: a form's policy may be any text; a non-ASCII one is then refused
    # as a signature mismatch (or, signed, as a document that is not base64) — not a 500.
    return hmac.new(key, policy_b64.encode("utf-8"), hashlib.sha256).hexdigest()


def v2_signature(secret: str, policy_b64: str) -> str:
    return base64.b64encode(_hmac(secret.encode("utf-8"), policy_b64, "sha1")).decode()


def build_form(
    credentials: Credentials,
    bucket: str,
    key: str,
    fields: Mapping[str, str],
    max_bytes: int,
    now: datetime,
    expires_in: timedelta = timedelta(seconds=60),
) -> dict[str, str]:
    """A signed (V4) browser-POST form for exactly this bucket, key and these fields."""
    day = now.strftime("%Y%m%d")
    amz = {
        "x-amz-algorithm": V4_ALGORITHM,
        "x-amz-credential": f"{credentials.access_key_id}/{day}/{credentials.region}/{SERVICE}/aws4_request",
        "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"),
    }
    form = {"key": key, **fields, **amz}
    policy = {
        "expiration": (now + expires_in).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "conditions": [
            {"bucket": bucket},
            *({name: value} for name, value in form.items()),
            ["content-length-range", 0, max_bytes],
        ],
    }
    policy_b64 = base64.b64encode(json.dumps(policy, separators=(",", ":")).encode()).decode()
    signature = v4_signature(credentials.secret_access_key, day, credentials.region, policy_b64)
    return {**form, "policy": policy_b64, "x-amz-signature": signature}


@dataclass(frozen=True)
class AcceptedForm:
    """What a verified form allows: the object's key and the size range of its body."""

    key: str
    min_bytes: int
    max_bytes: int | None


def verify_form(
    form: Mapping[str, str],
    bucket: str,
    secrets: Mapping[str, Credentials],
    now: datetime,
    filename: str = "",
) -> AcceptedForm:
    """Check a form's signature, expiry and every policy condition; raises PolicyError.

    `form` holds the fields sent before the file, keys lowercased (S3 treats field names
    case-insensitively); `filename` is the file part's name, for `${filename}` in keys.
    """
    if "key" not in form:
        raise PolicyError("InvalidArgument", "Bucket POST must contain a field named 'key'.", 400)
    policy_b64 = form.get("policy")
    if not policy_b64:
        raise PolicyError(
            "InvalidArgument", "Bucket POST must contain a field named 'policy'.", 400
        )
    _check_signature(form, policy_b64, secrets)
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
        conditions = policy["conditions"]
        assert isinstance(conditions, list)
        expiration = policy["expiration"]
    except (ValueError, KeyError, TypeError, AssertionError, RecursionError, binascii.Error):
        # RecursionError: json.loads on a document nested thousands of levels deep.
        raise PolicyError("InvalidPolicyDocument", "Invalid Policy: Invalid JSON.", 400) from None
    if now >= _expiration_time(expiration):
        raise denied("Invalid according to Policy: Policy expired.")
    values = {**form, "bucket": bucket}
    values["key"] = values["key"].replace("${filename}", filename)
    covered = {"bucket"}
    min_bytes, max_bytes = 0, None
    for condition in conditions:
        if _operator(condition) == "content-length-range":
            min_bytes, max_bytes = _length_range(condition)
            continue
        name, matcher, expected = _condition(condition)
        covered.add(name)
        actual = values.get(name)
        ok = actual is not None and (
            actual == expected if matcher == "eq" else actual.startswith(expected)
        )
        if not ok:
            raise denied(
                f"Invalid according to Policy: Policy Condition failed: "
                f'["{matcher}", "${name}", "{expected}"]'
            )
    extra = [
        name
        for name in form
        if name not in covered and name not in EXEMPT_FIELDS and not name.startswith("x-ignore-")
    ]
    if extra:
        raise denied(f"Invalid according to Policy: Extra input fields: {', '.join(extra)}")
    return AcceptedForm(values["key"], min_bytes, max_bytes)


def _operator(condition: Any) -> str | None:
    """A list condition's operator, lowercased (S3 ignores its case)."""
    if isinstance(condition, list) and condition and isinstance(condition[0], str):
        return condition[0].lower()
    return None


def _length_range(condition: list[Any]) -> tuple[int, int]:
    """content-length-range's (min, max): two integers, 0 <= min <= max."""
    bounds = [
        int(bound) if isinstance(bound, str) and bound.isascii() and bound.isdigit() else bound
        for bound in condition[1:]
    ]
    if (
        len(bounds) != 2
        or not all(isinstance(bound, int) and not isinstance(bound, bool) for bound in bounds)
        or not 0 <= bounds[0] <= bounds[1]
    ):
        raise PolicyError(
            "InvalidPolicyDocument",
            "Invalid Policy: Invalid content-length-range: it needs two integers, 0 <= min <= max.",
            400,
        )
    return bounds[0], bounds[1]


def _condition(condition: Any) -> tuple[str, str, str]:
    """(field, 'eq' | 'starts-with', value) of one policy condition; field names and
    operators are case-insensitive, values must be strings (a null matches nothing)."""
    if isinstance(condition, dict) and len(condition) == 1:
        ((name, value),) = condition.items()
        if isinstance(value, str):
            return name.lower(), "eq", value
    elif (
        _operator(condition) in ("eq", "starts-with")
        and len(condition) == 3
        and isinstance(condition[1], str)
        and condition[1].startswith("$")
        and isinstance(condition[2], str)
    ):
        return condition[1][1:].lower(), condition[0].lower(), condition[2]
    raise PolicyError("InvalidPolicyDocument", "Invalid Policy: Invalid Simple-Condition.", 400)


def _check_signature(
    form: Mapping[str, str], policy_b64: str, secrets: Mapping[str, Credentials]
) -> None:
    if "x-amz-signature" in form:
        if form.get("x-amz-algorithm") != V4_ALGORITHM:
            raise PolicyError("InvalidArgument", "Unsupported x-amz-algorithm.", 400)
        parts = form.get("x-amz-credential", "").split("/")
        if len(parts) != 5 or parts[3:] != [SERVICE, "aws4_request"]:
            raise PolicyError("InvalidArgument", "Invalid x-amz-credential.", 400)
        access_key, day, region = parts[0], parts[1], parts[2]
        credentials = secrets.get(access_key)
        if credentials is not None and region != credentials.region:
            raise PolicyError(
                "AuthorizationHeaderMalformed",
                f"The region '{region}' is wrong; expecting '{credentials.region}'.",
                400,
            )
        if not form.get("x-amz-date", "").startswith(day):
            raise PolicyError(
                "InvalidArgument", "x-amz-credential's date must be the day of x-amz-date.", 400
            )
        expected = (
            v4_signature(credentials.secret_access_key, day, region, policy_b64)
            if credentials
            else ""
        )
        given = form["x-amz-signature"]
    elif "signature" in form:
        if "awsaccesskeyid" not in form:
            raise PolicyError(
                "InvalidArgument", "Bucket POST must contain a field named 'AWSAccessKeyId'.", 400
            )
        credentials = secrets.get(form["awsaccesskeyid"])
        expected = v2_signature(credentials.secret_access_key, policy_b64) if credentials else ""
        given = form["signature"]
    else:
        raise PolicyError("InvalidArgument", "Bucket POST must contain a signature.", 400)
    if credentials is None:
        raise PolicyError(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            403,
        )
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise PolicyError(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
            403,
        )


def _expiration_time(value: Any) -> datetime:
    """A policy's expiration as a time; InvalidPolicyDocument when it is not ISO 8601 UTC
    text or names no real moment (`2026-13-45T99:99:99Z` matches the pattern)."""
    if isinstance(value, str) and EXPIRATION.fullmatch(value):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise PolicyError(
        "InvalidPolicyDocument",
        "Invalid Policy: Invalid 'expiration' value: it must be ISO 8601 in UTC, "
        "such as 2026-01-01T12:00:00.000Z.",
        400,
    )
