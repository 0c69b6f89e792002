"""The Peewee store on SQLite and PostgreSQL: schema versions, keys, hosts, contacts."""

from __future__ import annotations

import hashlib

import peewee
import pytest

from server import admin
from server.api_keys import KeyVerifier, create_api_key, revoke_api_key
from server.database.migrations import MIGRATIONS, SchemaVersion, current_version, migrate
from server.database.models import ApiKey, Contact, Tenant


def test_migrations_are_recorded_once(store: peewee.Database) -> None:
    assert current_version(store) == MIGRATIONS[-1][0]
    assert migrate(store) == []  # a second run applies nothing
    with store.bind_ctx([SchemaVersion]):
        assert [row.version for row in SchemaVersion.select()] == [m[0] for m in MIGRATIONS]


def test_api_key_is_stored_only_as_its_hash(store: peewee.Database) -> None:
    tenant = admin.create_tenant("acme", ["acme.example"], "en")
    key, plaintext = create_api_key(tenant, "c2c")
    assert plaintext.startswith("c2c_") and len(plaintext) > 40
    row = ApiKey.get(ApiKey.key_id == key.key_id)
    assert row.secret_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    columns = {name: getattr(row, name) for name in row._meta.fields}
    assert plaintext not in {str(value) for value in columns.values()}


def test_key_verification_kind_revocation_and_hosts(store: peewee.Database) -> None:
    acme = admin.create_tenant("acme", ["acme.example"], "en")
    other = admin.create_tenant("other", ["other.example"], "es")
    key, plaintext = create_api_key(acme, "c2c")
    _, close_key = create_api_key(acme, "close")
    now = [0.0]
    verifier = KeyVerifier(clock=lambda: now[0])

    principal = verifier.verify(plaintext, "c2c", "acme.example")
    assert principal is not None and principal.tenant_id == acme.id
    assert verifier.verify(plaintext, "c2c", None) == principal  # internal callers
    assert verifier.verify(plaintext, "c2c", "unbound.example") == principal
    assert verifier.verify(plaintext, "c2c", "other.example") is None  # another tenant's host
    assert verifier.verify(close_key, "c2c", None) is None  # wrong prefix for the surface
    assert verifier.verify(plaintext, "close", None) is None
    assert verifier.verify(plaintext[:-1] + "x", "c2c", None) is None
    assert other.locale == "es"

    assert revoke_api_key(key.key_id)
    assert verifier.verify(plaintext, "c2c", None) == principal  # cached for a moment
    now[0] += 10
    assert verifier.verify(plaintext, "c2c", None) is None
    assert not revoke_api_key(key.key_id)


def test_host_binding_is_exclusive(store: peewee.Database) -> None:
    admin.create_tenant("acme", ["ACME.example"], "en")
    with pytest.raises(admin.AdminError, match="bound to another tenant"):
        admin.create_tenant("other", ["acme.example"], "en")
    assert Tenant.select().count() == 1  # the failed creation left nothing behind


def test_contacts_are_matched_on_normalized_email(store: peewee.Database) -> None:
    admin.create_tenant("acme", [], "en")
    contact = admin.create_contact("acme", "  User@Example.COM ", "Ada", "Lovelace")
    row = Contact.get_by_id(contact.id)
    assert (row.email, row.email_normalized) == ("User@Example.COM", "user@example.com")
    assert row.deleted_at is None


def test_demo_bootstrap_is_idempotent_and_rotates_the_key(store: peewee.Database) -> None:
    from server.crm.passwords import verify_password
    from server.database.models import User

    first = admin.bootstrap_demo()
    second = admin.bootstrap_demo()
    assert len({first.c2c_key, second.c2c_key, first.close_key, second.close_key}) == 4
    tenant = Tenant.get(Tenant.name == "demo")
    assert sorted(h.host for h in tenant.hosts) == ["127.0.0.1", "localhost"]
    keys = list(ApiKey.select().where(ApiKey.tenant == tenant).order_by(ApiKey.id))
    assert [(k.kind, k.revoked_at is None) for k in keys] == [
        ("c2c", False),
        ("close", False),
        ("c2c", True),
        ("close", True),
    ]
    assert Contact.select().where(Contact.tenant == tenant).count() == 1
    user = User.get(User.email == "demo@example.com")
    assert verify_password(second.voyzu_password, user.password_hash)
    assert not verify_password(first.voyzu_password, user.password_hash)
    assert tenant.plan == "paid"
