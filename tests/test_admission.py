"""Admission answered from memory (a key verified moments ago, a budget with no sync due)
decides every call exactly as the way through the store does: the same principal, the
same budget counted, the same refusals at the same call."""

from __future__ import annotations

import asyncio

import peewee

from server import admin
from server.api_keys import KeyVerifier
from server.authentication import ApiKeyCredential, Authenticator
from server.config import Settings
from server.errors import ApiError
from server.principal import Principal
from server.rate_limits import RateLimits

METHOD = "/c2c.v1.ContactAssets/Health"
WRONG_KEY = "c2c_wrong"


async def _outcomes(key: str, address: str, *, from_memory: bool) -> list[tuple[str, object]]:
    """200 calls, two with a wrong key, within a budget of 150 calls: each call's way
    ("memory", "store" or "refused") and its principal's tenant or its refusal."""
    limits = RateLimits(Settings(rate_limit=150, auth_address_failures=3))
    authenticator = Authenticator(
        {"c2c": ApiKeyCredential(KeyVerifier(), "c2c", limits.before_lookup)}
    )
    cached = authenticator.cached if from_memory else None
    outcomes: list[tuple[str, object]] = []
    for call in range(200):
        presented = WRONG_KEY if call in (4, 9) else key
        metadata = {"authorization": f"Bearer {presented}", "x-crmgate-host": "acme.example"}
        try:
            admitted = limits.admit(METHOD, metadata, address, authenticator, cached)
            if isinstance(admitted, Principal):
                outcomes.append(("memory", admitted.tenant_name))
            else:
                principal = await admitted
                assert principal is not None
                outcomes.append(("store", principal.tenant_name))
        except ApiError as error:
            outcomes.append(("refused", (error.reason, error.metadata.get("remaining"))))
    return outcomes


def test_memory_admits_as_the_store_does(store: peewee.Database) -> None:
    admin.create_tenant("acme", ["acme.example"], "en")
    # A key and a client address each: the runs share no budget and no lockout.
    slow = asyncio.run(_outcomes(admin.issue_key("acme", "c2c"), "192.0.2.1", from_memory=False))
    fast = asyncio.run(_outcomes(admin.issue_key("acme", "c2c"), "192.0.2.2", from_memory=True))

    def decided(outcomes: list[tuple[str, object]]) -> list[object]:
        return [detail if way == "refused" else way != "refused" for way, detail in outcomes]

    assert decided(fast) == decided(slow)
    assert {way for way, _ in slow} == {"store", "refused"}
    assert [way for way, _ in fast].count("memory") >= 100  # most calls, no await
    refusals = {detail[0] for way, detail in fast if way == "refused"}  # type: ignore[index]
    assert refusals == {"invalid_api_key", "rate_limited"}
    assert {detail for way, detail in fast if way != "refused"} == {"acme"}
