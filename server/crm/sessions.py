"""voyzu sessions: random ids handed out once, stored as SHA-256, with an expiry.

Like API keys, a user signs in and uses a session only on hosts its tenant may use
(server.tenant_hosts): elsewhere the credentials are as good as wrong."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.contract import HOST_KEY, SESSION_KEY
from server.api_keys import hash_secret
from server.crm.passwords import hash_password, needs_rehash, verify_password
from server.database.connection import database
from server.database.models import Session, Tenant, User, utcnow
from server.executors import run_cpu, run_db
from server.principal import Principal
from server.tenant_hosts import tenant_hosts

SESSION_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True)
class NewSession:
    session_id: str
    user: User
    expires_at: datetime


async def sign_in(email: str, password: str, host: str | None = None) -> NewSession | None:
    """A new session for the user with these credentials on this host, else None
    (whichever was wrong: the caller cannot tell, and the timing does not tell either).
    The hash is checked on the CPU pool so a flood of sign-ins never holds a database
    thread."""
    user = await run_db(_user_on_host, email.strip().lower(), host)
    stored = user.password_hash if user else None
    if not await run_cpu(verify_password, password, stored) or user is None:
        return None
    if needs_rehash(user.password_hash):  # an older scheme: replace it while we can
        user.password_hash = await run_cpu(hash_password, password)
        await run_db(lambda: user.save(only=[User.password_hash]))
    return await run_db(_open_session, user)


def _user_on_host(email: str, host: str | None) -> User | None:
    user = User.get_or_none(User.email == email)
    return user if user is not None and tenant_hosts.admits(host, user.tenant_id) else None


def _open_session(user: User) -> NewSession:
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    with database.atomic():
        # Expired sessions are dead already; sign-ins sweep them so the table stays small.
        Session.delete().where(Session.expires_at <= now).execute()
        Session.create(
            token_hash=hash_secret(session_id), user=user, expires_at=now + SESSION_LIFETIME
        )
    return NewSession(session_id, user, now + SESSION_LIFETIME)


def sign_out(session_id: str) -> None:
    """Revoke a session: its id authenticates nothing from now on (on every server, as
    each call reads the session from the database)."""
    Session.delete().where(Session.token_hash == hash_secret(session_id)).execute()


def principal_for(session_id: str, host: str | None = None) -> Principal | None:
    row = (
        Session.select(Session, User, Tenant)
        .join(User)
        .join(Tenant)
        .where(Session.token_hash == hash_secret(session_id), Session.expires_at > utcnow())
        .first()
    )
    if row is None or not tenant_hosts.admits(host, row.user.tenant_id):
        return None
    return principal_for_user(row.user)


def principal_for_user(user: User) -> Principal:
    tenant = user.tenant
    return Principal(
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        locale=tenant.locale,
        honor_accept_language=tenant.honor_accept_language,
        credential_kind="session",
        credential_id=f"user:{user.uuid}",
        user_id=user.id,
        request_limit=tenant.request_limit,
    )


async def verify_session(metadata: Mapping[str, str]) -> Principal | None:
    """The pipeline's verifier for the "session" credential kind."""
    session_id = metadata.get(SESSION_KEY, "")
    if not session_id or len(session_id) > 200 or not session_id.isascii():
        return None
    return await run_db(principal_for, session_id, metadata.get(HOST_KEY) or None)
