"""Schemathesis hooks (SCHEMATHESIS_HOOKS): voyzu documents 540 as its answer to a domain
error (a duplicate email, say), so there a 540 is no server error; any other 5xx is."""

from __future__ import annotations

from typing import Any

import schemathesis

#: voyzu's documented domain-error status.
DOMAIN_ERROR = 540


@schemathesis.check
def no_unanticipated_error(ctx: Any, response: Any, case: Any) -> bool | None:
    status = response.status_code
    if status >= 500 and status != DOMAIN_ERROR:
        raise AssertionError(f"server error {status}: {response.text[:500]}")
    return None
