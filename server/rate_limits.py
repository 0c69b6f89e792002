"""Rate limits every server process shares: brute-force lockouts and request budgets.

State lives in the store (`rate_counter`): one row per key holding its window's start
and count, bumped atomically by one `INSERT … ON CONFLICT DO UPDATE … RETURNING` (SQLite
and PostgreSQL alike), so the limits hold across replicas. Keys are SHA-256 digests:
no email, address or credential is stored in the clear.

* Lockouts count failures: failed sign-ins per account and per client address, and wrong
  API keys or sessions per client address. A key's window begins at its first failure
  and lasts `auth_failure_window`; at the limit the key is refused until it ends (so
  there are never more than the limit in a row, window boundaries or not). Sign-in reads
  the store's counts first; so does every credential looked up in the store (sessions;
  API keys not verified by this process in the last two seconds), believing an address's
  "not locked" for a second unless it fails meanwhile; a call with a key verified moments
  ago is checked against the lockouts this process knows of (each failure it records
  returns the shared count). A successful sign-in clears its account's count
  ("consecutive" failures, NIST SP 800-63B §5.2.2).
* Budgets count every call of a key or session. The hot path is arithmetic on an
  in-process counter; it adds its count to the store's once a second, and every
  `batch` calls, where the batch shrinks as the budget runs out (a tenth of what is
  left, at most 1,000, at least 1), so near the limit every call consults the store and
  replicas overshoot it by no more than the calls in flight at once.

A throttled call is RESOURCE_EXHAUSTED `rate_limited`, with `limit`, `remaining` and
`reset` (seconds to the window's end) in ErrorInfo.metadata and a google.rpc.RetryInfo.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import grpc

from gateway.contract import (
    AUTHORIZATION_KEY,
    CLIENT_ADDRESS_KEY,
    RATE_LIMITED,
    SESSION_KEY,
)
from gateway.localisation import translate
from server import metrics
from server.authentication import PUBLIC_METHODS, CredentialVerifier
from server.config import Settings
from server.database.connection import database
from server.database.models import RateCounter
from server.errors import ApiError
from server.executors import run_db
from server.principal import Principal
from server.single_flight import SingleFlight

log = logging.getLogger("crmgate.ratelimit")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Clock = Callable[[], float]
#: The pipeline's authentication step, and its answer from memory (Authenticator.cached).
Authenticate = Callable[[str, Mapping[str, str]], Awaitable[Principal | None]]
CachedAuthenticate = Callable[[str, Mapping[str, str]], Principal | None]

#: Calls no budget counts: the gateway's own lookup of a caller's message language.
UNBUDGETED_METHODS = frozenset({"/c2c.v1.ContactAssets/GetMessageLocale"})
#: How often an active budget adds its calls to the store, at the least.
SYNC_SECONDS = 1.0
MAX_BATCH = 1000
#: In-process entries (budgets, known lockouts) beyond which stale ones are dropped.
MAX_ENTRIES = 10_000
#: How long the store's word that an address is not locked out is believed (per process).
CLEAR_SECONDS = 1.0

#: The client address of the call being run (set by the pipeline), for sign-in limits.
current_client: contextvars.ContextVar[str] = contextvars.ContextVar("current_client", default="")


class Throttled(ApiError):
    """A call refused by a rate limit: retry after `reset` seconds."""

    def __init__(self, kind: str, limit: int, remaining: int, reset: float) -> None:
        """`kind`: `budget` (requests per window) or `lockout` (failures); counted."""
        metrics.refused(kind)
        seconds = max(1, math.ceil(reset))
        super().__init__(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            RATE_LIMITED,
            translate(RATE_LIMITED, "en", reset=seconds),
            metadata={"limit": str(limit), "remaining": str(remaining), "reset": str(seconds)},
            retry_after=seconds,
        )


def digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def bump(key: str, now: int, window: int, delta: int) -> tuple[int, int]:
    """Add `delta` to the key's count and return (count, window start), atomically. A
    window starts at the key's first count and lasts `window` seconds; a count after it
    starts a new one. Blocking: run it with run_db."""
    table = RateCounter._meta.table_name
    param = database.param
    live = f'"{table}"."window_start" > {param}'
    sql = (
        f'INSERT INTO "{table}" ("key", "window_start", "count") VALUES ({param}, {param}, {param}) '
        'ON CONFLICT ("key") DO UPDATE SET '
        f'"count" = CASE WHEN {live} THEN "{table}"."count" + excluded."count" '
        'ELSE excluded."count" END, '
        f'"window_start" = CASE WHEN {live} THEN "{table}"."window_start" '
        'ELSE excluded."window_start" END '
        'RETURNING "count", "window_start"'
    )
    cutoff = now - window
    with database.atomic():
        count, start = database.execute_sql(sql, (key, now, delta, cutoff, cutoff)).fetchone()
    return int(count), int(start)


def current(keys: list[str], now: int, window: int) -> dict[str, tuple[int, int]]:
    """(count, window start) of those keys that have a live window."""
    query = RateCounter.select(RateCounter.key, RateCounter.count, RateCounter.window_start).where(
        RateCounter.key.in_(keys), RateCounter.window_start > now - window
    )
    return {row.key: (row.count, row.window_start) for row in query}


def clear(key: str) -> None:
    RateCounter.delete().where(RateCounter.key == key).execute()


class Lockouts:
    """Failure counts in the store, and the lockouts this process knows of."""

    def __init__(self, window: float, clock: Clock = time.time) -> None:
        self._window = math.ceil(window)
        self._clock = clock
        self._until: dict[str, float] = {}  # key → locked until (wall clock)
        #: One store read at a time per set of keys: a client's connections share it.
        self._reads: SingleFlight[dict[str, tuple[int, int]]] = SingleFlight()

    def check_known(self, key: str, limit: int) -> None:
        """Refuse at once if this process knows the key is locked out."""
        until = self._until.get(key)
        if until is not None:
            now = self._clock()
            if now < until:
                raise Throttled("lockout", limit, 0, until - now)
            del self._until[key]

    async def check(self, keys: Mapping[str, int]) -> dict[str, int]:
        """Refuse if any key (→ its limit) is locked out, asking the store; else the
        failures each has in its window."""
        for key, limit in keys.items():
            self.check_known(key, limit)
        live = await self._reads.run(
            tuple(keys),
            functools.partial(run_db, current, list(keys), int(self._clock()), self._window),
        )
        for key, (count, start) in live.items():
            if count >= keys[key]:
                self._lock(key, start)
                self.check_known(key, keys[key])
        return {key: count for key, (count, _) in live.items()}

    async def fail(self, keys: Mapping[str, int]) -> None:
        """Count a failure against each key; raise Throttled if one was already at its
        limit (this process had not known). The failure that reaches a limit is answered
        as it is; those after it are refused until its window ends."""
        over: tuple[int, float] | None = None
        for key, limit in keys.items():
            count, start = await run_db(bump, key, int(self._clock()), self._window, 1)
            if count >= limit:
                self._lock(key, start)
            if count > limit:
                over = (limit, start + self._window - self._clock())
        if over is not None:
            raise Throttled("lockout", *over)

    async def succeed(self, key: str) -> None:
        self._until.pop(key, None)
        await run_db(clear, key)

    def _lock(self, key: str, window_start: int) -> None:
        if len(self._until) >= MAX_ENTRIES:
            now = self._clock()
            self._until = {k: until for k, until in self._until.items() if until > now}
        self._until[key] = window_start + self._window


@dataclass(slots=True)  # read and bumped on every call
class _Budget:
    window_start: int | None = None  # the store's, learnt at the first sync
    synced: int = 0  # the store's count at the last sync (every process's calls)
    pending: int = 0  # this process's calls since
    synced_at: float = -math.inf
    syncing: bool = False


class Budgets:
    """Calls per key or session per window, shared through the store."""

    def __init__(self, window: float, clock: Clock = time.time) -> None:
        self._window = math.ceil(window)
        self._clock = clock
        self._budgets: dict[str, _Budget] = {}

    def spend(self, key: str, limit: int) -> Awaitable[None] | None:
        """Count one call against the key's budget; raises Throttled when it is spent.
        None when memory answered (most calls: no await), else an awaitable that first
        adds the count to the store's, then decides."""
        now = self._clock()
        budget = self._budgets.get(key)
        if budget is None or (
            budget.window_start is not None and now >= budget.window_start + self._window
        ):
            budget = self._fresh(key, now)
        budget.pending += 1
        if not budget.syncing and (
            budget.window_start is None
            or budget.pending >= min(MAX_BATCH, max(1, (limit - budget.synced) // 10))
            or now - budget.synced_at >= SYNC_SECONDS
        ):
            return self._synced_spend(key, budget, now, limit)
        self._check(budget, limit, now)
        return None

    async def _synced_spend(self, key: str, budget: _Budget, now: float, limit: int) -> None:
        await self._sync(key, budget, now)
        self._check(budget, limit, now)

    def _check(self, budget: _Budget, limit: int, now: float) -> None:
        if budget.synced + budget.pending > limit:
            start = now if budget.window_start is None else budget.window_start
            raise Throttled("budget", limit, 0, start + self._window - now)

    def _fresh(self, key: str, now: float) -> _Budget:
        if len(self._budgets) >= MAX_ENTRIES:
            self._budgets = {
                k: b
                for k, b in self._budgets.items()
                if b.window_start is not None and now < b.window_start + self._window
            }
        budget = self._budgets[key] = _Budget()
        return budget

    async def _sync(self, key: str, budget: _Budget, now: float) -> None:
        budget.syncing = True
        sent = budget.pending
        try:
            count, start = await run_db(bump, key, int(now), self._window, sent)
        except ApiError as error:  # the store is down: count on, sync when it is back
            log.warning("rate budget not synced: %s", error.message)
            return
        finally:
            budget.syncing = False
        if start != budget.window_start:  # the first sync, or another process began anew
            budget.window_start, budget.synced = start, count
        else:
            budget.synced = max(budget.synced, count)
        budget.pending -= sent
        budget.synced_at = now


class RateLimits:
    """The pipeline's and sign-in's view of every limit, from the settings."""

    def __init__(self, settings: Settings, clock: Clock = time.time) -> None:
        self._account_failures = settings.auth_account_failures
        self._address_failures = settings.auth_address_failures
        self._default_budget = settings.rate_limit
        self._gateways: list[Network] = [
            ipaddress.ip_network(cidr, strict=False) for cidr in settings.trusted_gateways
        ]
        self._clock = clock
        self._clear: dict[str, float] = {}  # address key → the store said "not locked" until
        #: peer → (whether it is a trusted gateway, its address): parsed once per peer.
        self._peers: dict[str, tuple[bool, str]] = {}
        self.lockouts = Lockouts(settings.auth_failure_window, clock)
        self.budgets = Budgets(settings.rate_window, clock)

    def client_address(self, metadata: Mapping[str, str], peer: str) -> str:
        """Who is calling: a trusted gateway's word for its HTTP client, else the peer."""
        known = self._peers.get(peer)
        if known is None:
            address = _peer_address(peer)
            known = (peer == "in-process" or _within(address, self._gateways), address)
            if len(self._peers) >= MAX_ENTRIES:
                self._peers.clear()
            self._peers[peer] = known
        trusted, address = known
        if trusted:
            return metadata.get(CLIENT_ADDRESS_KEY) or address or peer
        return address or peer

    def admit(
        self,
        method: str,
        metadata: Mapping[str, str],
        address: str,
        authenticate: Authenticate,
        cached: CachedAuthenticate | None = None,
    ) -> Principal | Awaitable[Principal | None]:
        """Authenticate a call within the limits: an address locked out for wrong
        credentials is refused first, each wrong credential counts, and a caller's
        calls spend its budget. The principal itself when memory answers all of it —
        `cached` knows the credential, the budget needs no sync (most calls: no await)
        — else an awaitable of the principal (None for a public method)."""
        if method in PUBLIC_METHODS:  # sign-in checks its own limits; capabilities need none
            return authenticate(method, metadata)
        address_key = _address_key(address)
        if self._address_failures:
            self.lockouts.check_known(address_key, self._address_failures)
        principal = cached(method, metadata) if cached is not None else None
        if principal is None:
            return self._authenticate(method, metadata, address_key, authenticate)
        spending = self._spend(method, principal)
        return principal if spending is None else _after(spending, principal)

    async def _authenticate(
        self, method: str, metadata: Mapping[str, str], address_key: str, authenticate: Authenticate
    ) -> Principal | None:
        """`admit`'s way when memory does not know the credential: ask, and count a wrong
        one against the address."""
        try:
            principal = await authenticate(method, metadata)
        except ApiError as error:
            presented = metadata.get(AUTHORIZATION_KEY) or metadata.get(SESSION_KEY)
            if (
                error.code == grpc.StatusCode.UNAUTHENTICATED
                and presented
                and self._address_failures
            ):
                self._clear.pop(address_key, None)
                await self.lockouts.fail({address_key: self._address_failures})
            raise
        if principal is not None:
            spending = self._spend(method, principal)
            if spending is not None:
                await spending
        return principal

    def _spend(self, method: str, principal: Principal) -> Awaitable[None] | None:
        """The call spends its caller's budget (see Budgets.spend)."""
        if method in UNBUDGETED_METHODS:
            return None
        limit = principal.request_limit
        limit = self._default_budget if limit is None else limit
        if not limit:
            return None
        key = _budget_key(principal.credential_kind, principal.credential_id)
        return self.budgets.spend(key, limit)

    async def before_lookup(self) -> None:
        """Before a credential is looked up in the store: refuse the caller's address if
        it is locked out on any replica. The store's "not locked" is believed for
        CLEAR_SECONDS (until the address fails here), so a busy client costs one read a
        second; only credentials this process verified moments ago skip this."""
        address = current_client.get()
        if not address or not self._address_failures:
            return
        key, now = _address_key(address), self._clock()
        if self._clear.get(key, 0.0) > now:
            self.lockouts.check_known(key, self._address_failures)
            return
        await self.lockouts.check({key: self._address_failures})
        if len(self._clear) >= MAX_ENTRIES:
            self._clear.clear()
        self._clear[key] = now + CLEAR_SECONDS

    def guarded(self, verify: CredentialVerifier) -> CredentialVerifier:
        """A verifier that always looks its credential up in the store (sessions), with
        `before_lookup` first."""

        async def guarded(metadata: Mapping[str, str]) -> Principal | None:
            await self.before_lookup()
            return await verify(metadata)

        return guarded

    def _sign_in_keys(self, email: str, address: str) -> dict[str, int]:
        keys = {}
        if self._account_failures:
            keys[_account_key(email)] = self._account_failures
        if self._address_failures:
            keys[_address_key(address)] = self._address_failures
        return keys

    async def before_sign_in(self, email: str, address: str) -> bool:
        """Refuse a sign-in for a locked-out account or address (asking the store);
        else whether the account has failures to its name."""
        keys = self._sign_in_keys(email, address)
        failures = await self.lockouts.check(keys) if keys else {}
        return bool(failures.get(_account_key(email)))

    async def after_sign_in(
        self, email: str, address: str, succeeded: bool, account_failed: bool
    ) -> None:
        """Count a failure, or clear the account's count after a success."""
        if succeeded:
            if account_failed:
                await self.lockouts.succeed(_account_key(email))
            return
        keys = self._sign_in_keys(email, address)
        if keys:
            await self.lockouts.fail(keys)


async def _after(spending: Awaitable[None], principal: Principal) -> Principal:
    await spending
    return principal


def _account_key(email: str) -> str:
    return digest("account", email.strip().lower())


@functools.lru_cache(maxsize=4096)  # the hot path asks for the same few again and again
def _address_key(address: str) -> str:
    return digest("address", address)


@functools.lru_cache(maxsize=4096)
def _budget_key(kind: str, credential_id: str) -> str:
    return digest("budget", kind, credential_id)


def _peer_address(peer: str) -> str:
    """`ipv4:1.2.3.4:5`, `ipv6:[::1]:5` → the address; anything else → ""."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""


def _within(address: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
