"""Operator commands behind `crmgate admin`: plain functions over the store."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import peewee

from server import consistency
from server.api_keys import create_api_key, revoke_api_key
from server.config import Settings
from server.crm.passwords import hash_password
from server.database import search
from server.database.connection import database
from server.database.models import ApiKey, Contact, Tenant, TenantHost, User, normalize_email
from server.objects import open_storage

T = TypeVar("T")


class AdminError(Exception):
    """An operator mistake, reported as one line and exit status 1."""


def create_tenant(
    name: str,
    hosts: list[str],
    locale: str,
    honor_accept_language: bool = True,
    request_limit: int | None = None,
) -> Tenant:
    with database.atomic():
        tenant = _insert(
            lambda: Tenant.create(
                name=name,
                locale=locale,
                honor_accept_language=honor_accept_language,
                request_limit=request_limit,
            ),
            f"tenant {name!r} already exists",
        )
        for host in hosts:
            bind_host(tenant, host)
    return tenant


def set_request_limit(name: str, limit: int | None) -> int | None:
    """A tenant's request budget per rate window (None: the server's default). Servers
    see it once their cached credentials expire (two seconds for keys)."""
    if not Tenant.update(request_limit=limit).where(Tenant.name == name).execute():
        raise AdminError(f"no tenant {name!r}")
    return limit


def bind_host(tenant: Tenant, host: str) -> None:
    host = host.strip().lower()
    owner = TenantHost.get_or_none(TenantHost.host == host)
    taken = f"host {host!r} is bound to another tenant"
    if owner is not None and owner.tenant_id != tenant.id:
        raise AdminError(taken)
    if owner is None:
        _insert(lambda: TenantHost.create(tenant=tenant, host=host), taken)


def _insert(create: Callable[[], T], duplicate: str) -> T:
    """Run an insert; the database refusing a duplicate is the operator's mistake
    `duplicate`, whoever got there first (another admin command, a running server)."""
    try:
        with database.atomic():  # a savepoint when already in a transaction
            return create()
    except peewee.IntegrityError:
        raise AdminError(duplicate) from None


def tenant_named(name: str) -> Tenant:
    tenant = Tenant.get_or_none(Tenant.name == name)
    if tenant is None:
        raise AdminError(f"no tenant named {name!r}")
    return tenant


def issue_key(tenant_name: str, kind: str, label: str = "") -> str:
    try:
        return create_api_key(tenant_named(tenant_name), kind, label)[1]
    except ValueError as error:
        raise AdminError(str(error)) from None


def revoke_key(key_id: str) -> None:
    if not revoke_api_key(key_id):
        raise AdminError(f"no active key {key_id!r}")


def list_keys(tenant_name: str) -> list[ApiKey]:
    tenant = tenant_named(tenant_name)
    return list(ApiKey.select().where(ApiKey.tenant == tenant).order_by(ApiKey.created_at))


def create_contact(tenant_name: str, email: str, first_name: str, last_name: str) -> Contact:
    tenant = tenant_named(tenant_name)
    return _insert(
        lambda: Contact.create(
            tenant=tenant,
            email=email.strip(),
            email_normalized=normalize_email(email),
            first_name=first_name,
            last_name=last_name,
            search_text=search.document(first_name, last_name, email, "", "", ()),
        ),
        f"tenant {tenant_name!r} has a contact with email {normalize_email(email)!r} already",
    )


PLANS = ("free", "paid")


def create_user(tenant_name: str, email: str, password: str, plan: str | None) -> User:
    """A voyzu user of a tenant (a voyzu "customer"). The plan belongs to the customer:
    giving one sets it for every user of that tenant."""
    email = normalize_email(email)
    if "@" not in email:
        raise AdminError(f"{email!r} is not an email address")
    if len(password) < 8:
        raise AdminError("passwords need at least 8 characters")
    tenant = tenant_named(tenant_name)
    password_hash = hash_password(password)
    with database.atomic():
        if plan is not None:
            tenant.plan = plan
            tenant.save()
        return _insert(
            lambda: User.create(tenant=tenant, email=email, password_hash=password_hash),
            f"a user with email {email!r} exists already",
        )


def delete_user(email: str) -> None:
    """Delete a user; their sessions die with them, their contacts become unowned."""
    deleted = User.delete().where(User.email == normalize_email(email)).execute()
    if not deleted:
        raise AdminError(f"no user with email {email!r}")


def fsck(settings: Settings, repair: bool) -> list[consistency.Mismatch]:
    """Every mismatch between the store and object storage, repaired if asked (see
    consistency.repair for what that does to each kind)."""
    buckets = open_storage(settings.storage_url, settings.data_dir)
    direct = settings.direct_uploads
    grace = timedelta(seconds=settings.orphan_grace_seconds)
    mismatches = consistency.check(buckets, grace, direct_uploads=direct)
    if repair:
        consistency.repair(buckets, mismatches, direct_uploads=direct)
    return mismatches


DEMO_TENANT = "demo"
DEMO_HOSTS = ["localhost", "127.0.0.1"]
DEMO_EMAIL = "user@example.com"
DEMO_USER = "demo@example.com"


@dataclass(frozen=True)
class DemoCredentials:
    c2c_key: str
    close_key: str
    voyzu_email: str
    voyzu_password: str


def bootstrap_demo() -> DemoCredentials:
    """Make sure the demo tenant, its contact and its voyzu user exist; return fresh
    credentials for all three surfaces.

    Secrets are stored only as hashes, so those printed by an earlier start cannot be
    shown again: each start revokes the previous demo keys and resets the demo password.
    """
    with database.atomic():
        tenant = Tenant.get_or_none(Tenant.name == DEMO_TENANT) or create_tenant(
            DEMO_TENANT, DEMO_HOSTS, "en"
        )
        if (
            not Contact.select()
            .where(
                Contact.tenant == tenant,
                Contact.email_normalized == DEMO_EMAIL,
                Contact.deleted_at.is_null(),
            )
            .exists()
        ):
            create_contact(DEMO_TENANT, DEMO_EMAIL, "Demo", "User")
        for key in ApiKey.select().where(
            ApiKey.tenant == tenant, ApiKey.label == "demo", ApiKey.revoked_at.is_null()
        ):
            revoke_api_key(key.key_id)
        password = secrets.token_urlsafe(12)
        user = User.get_or_none(User.email == DEMO_USER)
        if user is None:
            create_user(DEMO_TENANT, DEMO_USER, password, "paid")
        else:
            user.password_hash = hash_password(password)
            user.save()
        return DemoCredentials(
            c2c_key=create_api_key(tenant, "c2c", label="demo")[1],
            close_key=create_api_key(tenant, "close", label="demo")[1],
            voyzu_email=DEMO_USER,
            voyzu_password=password,
        )
