"""Settings shared by every crmgate command, read from flags and CRMGATE_* variables.

`crmgate serve` and `crmgate admin` build their settings the same way, so an admin
command run with the same CRMGATE_DATA_DIR acts on the running server's data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from gateway.localisation import SUPPORTED_LOCALES

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Settings:
    """Where crmgate keeps its data and how it talks about itself."""

    data_dir: Path = Path("var")
    database_url: str | None = None
    storage_url: str | None = None
    public_url: str | None = None
    log_level: str = "INFO"
    default_locale: str = "en"
    dev: bool = False
    #: How old a temp file or an object no row references must be before the orphan
    #: sweep and fsck count it as crash debris: younger ones may be uploads in flight.
    orphan_grace_seconds: float = 3600.0
    #: How long a stopping server lets its running background requests finish before it
    #: releases them (re-queued when idempotent, else failed).
    drain_seconds: float = 20.0
    #: How long a server's claim on a background request lasts unless renewed (its
    #: heartbeat renews it every third of this): a dead server's requests settle within
    #: 4/3 of it.
    lease_seconds: float = 30.0
    #: Database threads per process; on PostgreSQL also the pooled connections (plus one
    #: for the health probe).
    db_pool_size: int = 8
    #: PostgreSQL cancels a statement running longer than this (seconds).
    db_statement_timeout: float = 30.0
    #: Background (`?async=true`) requests one process runs at once; the rest wait.
    background_limit: int = 2
    #: Close upload forms are presigned POSTs to the S3 bucket itself (bytes never pass
    #: through crmgate); each upload is confirmed with a HEAD when it is first used.
    direct_uploads: bool = False
    #: Seconds an HTTP client may send nothing while it owes the rest of a request (its
    #: head or its body) before the gateway closes the connection.
    read_timeout: float = 60.0
    #: Request bodies of the largest size one gateway process reads at once; bodies over
    #: 1 MiB (or chunked, counted as the largest) share that room by their length;
    #: beyond, 503 with Retry-After.
    max_large_uploads: int = 4
    #: Failed sign-ins one voyzu account may have in a row within the failure window
    #: before sign-in is refused for the rest of it (NIST SP 800-63B: at most 100); 0: off.
    auth_account_failures: int = 100
    #: Failed sign-ins and wrong credentials one client address may have in the failure
    #: window before its calls are refused for the rest of it; 0: off.
    auth_address_failures: int = 100
    #: The failure window, in seconds (a success clears the account's count).
    auth_failure_window: float = 900.0
    #: Requests each API key and session may make per rate window (a tenant's own
    #: `request_limit` replaces it); 0: no budget.
    rate_limit: int = 60_000
    #: The rate window, in seconds.
    rate_window: float = 60.0
    #: Peers whose x-crmgate-client-address metadata (the HTTP client's address) is
    #: believed: gateways. Calls from anyone else count as from the peer itself.
    trusted_gateways: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    #: Prometheus metrics at GET /metrics (HTTP processes) and on the metrics port; off,
    #: no metric is kept at all (what `make bench` compares the default against).
    metrics: bool = True
    #: `crmgate server`'s metrics listener (it has no HTTP port of its own); None: none.
    metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from CRMGATE_* variables; unset variables keep the defaults."""
        env = os.environ if env is None else env
        settings = cls(
            data_dir=Path(env.get("CRMGATE_DATA_DIR") or "var"),
            database_url=env.get("CRMGATE_DATABASE_URL") or None,
            storage_url=env.get("CRMGATE_STORAGE_URL") or None,
            public_url=(env.get("CRMGATE_PUBLIC_URL") or "").rstrip("/") or None,
            log_level=(env.get("CRMGATE_LOG_LEVEL") or "INFO").upper(),
            default_locale=env.get("CRMGATE_DEFAULT_LOCALE") or "en",
            orphan_grace_seconds=_number(
                env, "CRMGATE_ORPHAN_GRACE_SECONDS", float, cls.orphan_grace_seconds, zero=True
            ),
            drain_seconds=_number(
                env, "CRMGATE_DRAIN_SECONDS", float, cls.drain_seconds, zero=True
            ),
            lease_seconds=_number(env, "CRMGATE_LEASE_SECONDS", float, cls.lease_seconds),
            db_pool_size=_number(env, "CRMGATE_DB_POOL_SIZE", int, cls.db_pool_size),
            db_statement_timeout=_number(
                env, "CRMGATE_DB_STATEMENT_TIMEOUT", float, cls.db_statement_timeout
            ),
            background_limit=_number(env, "CRMGATE_BACKGROUND_LIMIT", int, cls.background_limit),
            direct_uploads=_flag(env, "CRMGATE_DIRECT_UPLOADS"),
            read_timeout=_number(env, "CRMGATE_READ_TIMEOUT", float, cls.read_timeout),
            max_large_uploads=_number(env, "CRMGATE_MAX_LARGE_UPLOADS", int, cls.max_large_uploads),
            auth_account_failures=_number(
                env, "CRMGATE_AUTH_ACCOUNT_FAILURES", int, cls.auth_account_failures, zero=True
            ),
            auth_address_failures=_number(
                env, "CRMGATE_AUTH_ADDRESS_FAILURES", int, cls.auth_address_failures, zero=True
            ),
            auth_failure_window=_number(
                env, "CRMGATE_AUTH_FAILURE_WINDOW", float, cls.auth_failure_window
            ),
            rate_limit=_number(env, "CRMGATE_RATE_LIMIT", int, cls.rate_limit, zero=True),
            rate_window=_number(env, "CRMGATE_RATE_WINDOW", float, cls.rate_window),
            trusted_gateways=tuple(
                cidr.strip()
                for cidr in env.get(
                    "CRMGATE_TRUSTED_GATEWAYS", ",".join(cls.trusted_gateways)
                ).split(",")
                if cidr.strip()
            ),
            metrics=_flag(env, "CRMGATE_METRICS", default="1"),
            metrics_port=_number(env, "CRMGATE_METRICS_PORT", int, 0, zero=True)
            if env.get("CRMGATE_METRICS_PORT")
            else None,
        )
        settings.validate()
        return settings

    def with_overrides(self, **changes: object) -> Settings:
        """Apply command-line flags on top of the environment; None means 'not given'."""
        given = {key: value for key, value in changes.items() if value is not None}
        settings = replace(self, **given)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.default_locale not in SUPPORTED_LOCALES:
            raise ValueError(
                f"CRMGATE_DEFAULT_LOCALE must be one of {', '.join(SUPPORTED_LOCALES)}"
            )

        if self.orphan_grace_seconds < 0:
            raise ValueError("CRMGATE_ORPHAN_GRACE_SECONDS must not be negative")
        if self.drain_seconds < 0:
            raise ValueError("CRMGATE_DRAIN_SECONDS must not be negative")
        if self.read_timeout <= 0:
            raise ValueError("CRMGATE_READ_TIMEOUT must be a positive number")
        if self.max_large_uploads < 1:
            raise ValueError("CRMGATE_MAX_LARGE_UPLOADS must be at least 1")
        if not 1 <= self.lease_seconds <= 30:
            raise ValueError("CRMGATE_LEASE_SECONDS must be between 1 and 30")
        if self.direct_uploads and not (self.storage_url or "").startswith("s3://"):
            raise ValueError(
                "CRMGATE_DIRECT_UPLOADS=1 needs S3 storage (CRMGATE_STORAGE_URL=s3://bucket/prefix):"
                " with local storage there is no bucket for clients to post to"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError("CRMGATE_METRICS_PORT must be a port number (0: any free one)")
        if self.auth_account_failures > 100:
            raise ValueError("CRMGATE_AUTH_ACCOUNT_FAILURES must be at most 100 (NIST SP 800-63B)")

    @property
    def sqlite_path(self) -> Path:
        """The embedded database, used unless database_url names another."""
        return self.data_dir / "crmgate.sqlite3"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"


def _number(
    env: Mapping[str, str], name: str, kind: type[N], default: N, *, zero: bool = False
) -> N:
    """A positive number (or zero, when `zero`) from the environment; unset keeps the
    default."""
    text = env.get(name)
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = kind(-1)
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be a positive number, not {text!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: str = "0") -> bool:
    """A switch: 1 on, 0 off, unset `default`; anything else is refused rather than
    guessed."""
    text = env.get(name) or default
    if text not in ("0", "1"):
        raise ValueError(f"{name} must be 1 or 0, not {text!r}")
    return text == "1"
