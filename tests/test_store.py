"""The Peewee store on SQLite and PostgreSQL: schema versions, keys, hosts, contacts."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import peewee
import pytest

from server import admin
from server.api_keys import KeyVerifier, create_api_key, revoke_api_key
from server.database.migrations import MIGRATIONS, SchemaVersion, current_version, migrate
from server.database.models import ApiKey, Contact, Tenant
from tests.conftest import create_postgres_database, drop_postgres_database


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


def test_contact_ids_are_time_ordered(store: peewee.Database) -> None:
    """Version 7 UUIDs: the creation millisecond first, so new contacts' ids sit side by
    side in the uuid index; the rest random, so ids made in one millisecond still differ."""
    admin.create_tenant("acme", [], "en")
    before = time.time_ns() // 1_000_000
    made = [admin.create_contact("acme", f"p{i}@example.com", "", "") for i in range(50)]
    after = time.time_ns() // 1_000_000
    ids = [Contact.get_by_id(contact.id).uuid for contact in made]
    assert {(found.version, found.variant) for found in ids} == {(7, uuid.RFC_4122)}
    assert all(before <= found.int >> 80 <= after for found in ids)
    assert [found.int >> 80 for found in ids] == sorted(found.int >> 80 for found in ids)
    assert len(set(ids)) == len(ids)


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


def test_one_live_contact_per_email_is_a_database_rule(store: peewee.Database) -> None:
    acme = admin.create_tenant("acme", [], "en")
    other = admin.create_tenant("other", [], "en")
    first = Contact.create(tenant=acme, email="a@x.example", email_normalized="a@x.example")
    with pytest.raises(peewee.IntegrityError), store.atomic():
        Contact.create(tenant=acme, email="A@x.example", email_normalized="a@x.example")
    Contact.create(tenant=other, email="a@x.example", email_normalized="a@x.example")
    first.deleted_at = first.created_at
    first.save()  # a deleted contact frees its email
    Contact.create(tenant=acme, email="a@x.example", email_normalized="a@x.example")
    assert Contact.select().where(Contact.tenant == acme).count() == 2


def test_custom_field_names_are_unique_ignoring_case(store: peewee.Database) -> None:
    from server.database.models import CustomField

    acme = admin.create_tenant("acme", [], "en")
    other = admin.create_tenant("other", [], "en")
    CustomField.create(tenant=acme, name="Tier", type="text")
    with pytest.raises(peewee.IntegrityError), store.atomic():
        CustomField.create(tenant=acme, name="TIER", type="text")
    CustomField.create(tenant=other, name="tier", type="text")


def test_uniqueness_migration_settles_duplicates_raced_in_before(database_url: str) -> None:
    """A database from before migration 8 (non-unique indexes) that races filled with
    duplicates: the oldest contact stays live, later ones are soft-deleted, the later
    custom field spelled differently is removed, and the rules then hold."""
    from server.database.connection import database, open_database
    from server.database.models import CustomField

    db = open_database(database_url)
    database.initialize(db)
    try:
        migrate(db)
        for statement in (
            "DROP INDEX contact_tenant_live_email",
            "CREATE INDEX contact_tenant_id_email_normalized ON contact (tenant_id, email_normalized)",
            "DROP INDEX custom_field_tenant_name_nocase",
            "CREATE UNIQUE INDEX custom_field_tenant_id_name ON custom_field (tenant_id, name)",
            "DELETE FROM schema_version WHERE version = 8",
        ):
            db.execute_sql(statement)
        acme = admin.create_tenant("acme", [], "en")
        ids = [
            Contact.create(tenant=acme, email=email, email_normalized="a@x.example").id
            for email in ("a@x.example", "A@x.example", "a@X.example")
        ]
        CustomField.create(tenant=acme, name="Tier", type="text")
        CustomField.create(tenant=acme, name="tier", type="number")

        assert migrate(db) == [8]
        live = Contact.select().where(Contact.deleted_at.is_null())
        assert [contact.id for contact in live] == ids[:1]
        assert Contact.select().count() == 3  # the others are soft-deleted, not gone
        assert [(f.name, f.type) for f in CustomField.select()] == [("Tier", "text")]
        with pytest.raises(peewee.IntegrityError), db.atomic():
            Contact.create(tenant=acme, email="a@x.example", email_normalized="a@x.example")
        with pytest.raises(peewee.IntegrityError), db.atomic():
            CustomField.create(tenant=acme, name="TIER", type="text")
    finally:
        db.close()


@pytest.fixture
def postgres_url(postgres_admin: object) -> Iterator[str]:
    name = create_postgres_database(postgres_admin)
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        drop_postgres_database(postgres_admin, name)


def backends(admin_connection: object, url: str) -> list[int]:
    with admin_connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (url.rsplit("/", 1)[1],)
        )
        return [pid for (pid,) in cursor.fetchall()]


def terminate_backends(admin_connection: object, url: str) -> None:
    """pg_terminate_backend on every connection to the database, and wait until they
    are gone (the server ends them asynchronously)."""
    pids = backends(admin_connection, url)
    with admin_connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s) AS pid", (pids,))
    deadline = time.monotonic() + 10
    while set(pids) & set(backends(admin_connection, url)):
        assert time.monotonic() < deadline, "terminated backends linger"
        time.sleep(0.01)


def test_postgres_pool_is_bounded_and_replaces_lost_connections(
    postgres_admin: object, postgres_url: str
) -> None:
    from server.database.connection import database, open_database, unit_of_work

    db = open_database(postgres_url, pool_size=2)
    database.initialize(db)
    migrate(db)
    db.close()
    admin.create_tenant("acme", [], "en")
    db.close()
    barrier = threading.Barrier(6)

    def busy() -> int:
        barrier.wait(timeout=10)  # six units at once, for two connections (and a spare)
        return db.execute_sql("SELECT count(*) FROM tenant").fetchone()[0]

    with ThreadPoolExecutor(max_workers=6) as pool:
        counts = list(pool.map(lambda _: unit_of_work(busy), range(6)))
    assert counts == [1] * 6
    assert 1 <= len(backends(postgres_admin, postgres_url)) <= 3

    terminate_backends(postgres_admin, postgres_url)
    # Every pooled connection is dead now: each next unit still succeeds, on a new one.
    assert unit_of_work(lambda: Tenant.select().count()) == 1
    assert unit_of_work(lambda: admin.create_tenant("globex", [], "en").name) == "globex"

    def lost_while_checked_out() -> list[str]:
        db.execute_sql("SELECT 1")  # this unit holds a connection now
        terminate_backends(postgres_admin, postgres_url)
        names = [tenant.name for tenant in Tenant.select().order_by(Tenant.id)]  # a read
        terminate_backends(postgres_admin, postgres_url)
        with db.atomic():  # BEGIN
            Tenant.create(name="initech")
        return names

    assert unit_of_work(lost_while_checked_out) == ["acme", "globex"]
    assert unit_of_work(lambda: Tenant.select().count()) == 3


def test_postgres_statements_have_a_time_limit(postgres_url: str) -> None:
    from server.database.connection import open_database

    db = open_database(postgres_url, statement_timeout=0.2)
    try:
        with pytest.raises(peewee.OperationalError, match="statement timeout"):
            db.execute_sql("SELECT pg_sleep(5)")
        assert db.execute_sql("SELECT 1").fetchone() == (1,)
    finally:
        db.close()


def _legacy_scrypt_hash(password: str) -> str:
    """A hash as crmgate made them before Argon2id (scrypt, N=2^14, r=8, p=1)."""
    import base64
    import hashlib

    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    encode = base64.b64encode
    return f"scrypt$16384$8$1${encode(salt).decode()}${encode(digest).decode()}"


def test_passwords_are_argon2id_and_old_hashes_are_upgraded_at_sign_in(
    store: peewee.Database,
) -> None:
    import asyncio

    from server.crm.passwords import hash_password, verify_password
    from server.crm.sessions import sign_in
    from server.database.models import User

    assert hash_password("a long password").startswith("$argon2id$")
    admin.create_tenant("acme", [], "en")
    user = admin.create_user("acme", "old@acme.example", "temporary password", None)
    User.update(password_hash=_legacy_scrypt_hash("kept from before")).execute()
    assert asyncio.run(sign_in("old@acme.example", "wrong")) is None
    assert User.get_by_id(user.id).password_hash.startswith("scrypt$")  # not on a failure
    assert asyncio.run(sign_in("old@acme.example", "kept from before")) is not None
    upgraded = User.get_by_id(user.id).password_hash
    assert upgraded.startswith("$argon2id$")
    assert verify_password("kept from before", upgraded)
    assert not verify_password("kept from before", None)  # an unknown user
    assert not verify_password("kept from before", "not a hash")
