"""Admission answered from memory (a key verified moments ago, a budget with no sync due)
decides every call exactly as the way through the store does: the same principal, the
same budget counted, the same refusals at the same call."""

from __future__ import annotations

import asyncio
import logging

import peewee
import pytest

from server import admin
from server.api_keys import KeyVerifier
from server.authentication import ApiKeyCredential, Authenticator
from server.config import Settings
from server.errors import ApiError
from server.principal import Principal
from server.rate_limits import RateLimits, current_client

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


def _store_reads(records: list[logging.LogRecord], table: str) -> int:
    """Statements peewee sent to the store that read `table`."""
    return sum(
        1
        for record in records
        if isinstance(record.msg, tuple)
        and str(record.msg[0]).startswith("SELECT")
        and f'FROM "{table}"' in str(record.msg[0])
    )


def test_a_lapsed_key_is_read_once_for_all_its_waiting_calls(
    store: peewee.Database, caplog: pytest.LogCaptureFixture
) -> None:
    """When a key's moment in memory lapses, a busy client's connections all miss it at
    once: they share one read of the key and one of their address's lockout, and each
    gets the principal (or the refusal) that read gives."""
    admin.create_tenant("acme", ["acme.example"], "en")
    key = admin.issue_key("acme", "c2c")
    now = [0.0]
    limits = RateLimits(Settings(auth_address_failures=3))
    credential = ApiKeyCredential(KeyVerifier(clock=lambda: now[0]), "c2c", limits.before_lookup)

    async def calls(presented: str) -> list[Principal | None]:
        metadata = {"authorization": f"Bearer {presented}", "x-crmgate-host": "acme.example"}
        return await asyncio.gather(*(credential(metadata) for _ in range(32)))

    for presented, tenants, address in (
        (key, {"acme"}, "192.0.2.7"),
        (WRONG_KEY, {None}, "192.0.2.8"),
    ):
        now[0] += 10  # every key's answer in memory has lapsed
        current_client.set(address)  # an address whose lockout nobody has read yet
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="peewee"):
            principals = asyncio.run(calls(presented))
        assert {p.tenant_name if p else None for p in principals} == tenants
        assert _store_reads(caplog.records, "api_key") == 1
        assert _store_reads(caplog.records, "rate_counter") == 1
