"""Contacts as voyzu users see them: only their customer's, and among those only their
own, those shared with them, and those no user owns."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

import grpc
import peewee
from crm.v1 import crm_pb2

from server.crm import messages
from server.crm.custom_fields import by_name, check_values
from server.crm.users import signed_in
from server.database import search as documents
from server.database.connection import database
from server.database.models import (
    SORT_INDEXES,
    Contact,
    CustomField,
    CustomFieldValue,
    User,
    UserShare,
    normalize_email,
    time_ordered_uuid,
    utcnow,
)
from server.errors import ApiError, invalid_argument, not_found

SORTABLE = {
    "FirstName": Contact.first_name,
    "LastName": Contact.last_name,
    "Email": Contact.email_normalized,
    "Company": Contact.company,
    "Phone": Contact.phone,
    "CreatedDate": Contact.created_at,
    "UpdatedDate": Contact.updated_at,
}
DEFAULT_PAGE_SIZE = 50
#: Longer search texts are refused (400): no name, email or value is longer.
MAX_SEARCH_TEXT = 200
MAX_PAGE_SIZE = 500
#: TotalCount counts at most this many matches past the page (see README).
COUNT_AHEAD = 1_000
#: SQLite: a search whose words the trigram index finds in at most this many contacts (of
#: every tenant) starts from those; one with more walks the sort order's index instead,
#: where matches are dense enough to fill a page soon.
FTS_FIRST_LIMIT = 5_000
#: SQLite: how many trigrams of each word the trigram index is asked for (the rarest).
RAREST_TERMS = 4
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
#: Longest value of each standard field, in the order of `Fields`.
LIMITS = {"FirstName": 100, "LastName": 100, "Email": 320, "Phone": 64, "Company": 200}


def visible_to(user: User) -> peewee.Expression:
    shared_owners = UserShare.select(UserShare.owner).where(UserShare.viewer == user)
    return (
        (Contact.tenant == user.tenant_id)
        & Contact.deleted_at.is_null()
        & (Contact.owner.is_null() | (Contact.owner == user) | Contact.owner.in_(shared_owners))
    )


def find(user: User, contact_id: str) -> Contact:
    """A contact the user may see: a malformed id is INVALID_ARGUMENT, an unknown one
    NOT_FOUND (the voyzu surface answers both with 400)."""
    try:
        parsed = uuid.UUID(contact_id)
    except ValueError:
        raise invalid_argument(f"{contact_id!r} is not a contact id.") from None
    contact = Contact.select().where(visible_to(user), Contact.uuid == parsed).first()
    if contact is None:
        raise not_found("contact_not_found", f"No contact {contact_id}.")
    return contact


class Fields(NamedTuple):
    """A contact's standard fields as given: what `check_fields` and `contact_row` read
    (an import builds these per row, far cheaper than a WebContact)."""

    first_name: str
    last_name: str
    email: str
    phone: str
    company: str


def fields_of(web: crm_pb2.WebContact) -> Fields:
    return Fields(web.first_name, web.last_name, web.email, web.phone, web.company)


def check_fields(
    known: Mapping[str, CustomField], fields: Fields, custom: Mapping[str, str]
) -> dict[str, str]:
    """The contact's custom values keyed by canonical name; INVALID_ARGUMENT listing
    everything wrong with it. `known` is `custom_fields.by_name` of its customer."""
    problems = []
    email = fields.email.strip()
    if not email:
        problems.append("Email is required.")
    elif not _EMAIL.fullmatch(email):
        problems.append("Email is not a valid email address.")
    for (name, limit), value in zip(LIMITS.items(), fields, strict=True):
        if len(value) > limit:
            problems.append(f"{name} must be at most {limit} characters.")
    values, custom_problems = check_values(known, custom)
    problems += custom_problems
    # PostgreSQL cannot store U+0000 (an imported cell may hold one; JSON callers are
    # refused by the gateway already).
    if "\x00" in "".join((*fields, *custom.values())):
        problems.append("Values must not contain NUL characters.")
    if problems:
        raise invalid_argument(" ".join(problems))
    return values


def duplicate() -> ApiError:
    """What the live-email index refusing a contact means to the caller: a domain rule,
    not malformed input (the surface answers 540)."""
    return ApiError(
        grpc.StatusCode.ALREADY_EXISTS,
        "duplicate_contact",
        "A contact with this email already exists for this customer.",
    )


def _search_text(fields: Fields, values: dict[str, str]) -> str:
    return documents.document(*fields, (values[name] for name in sorted(values)))


def _write_values(contact: Contact, values: dict[str, str]) -> None:
    CustomFieldValue.delete().where(CustomFieldValue.contact == contact).execute()
    for name, value in values.items():
        if value != "":
            CustomFieldValue.create(contact=contact, name=name, value=value)


def contact_row(
    user: User, fields: Fields, values: dict[str, str], now: datetime
) -> dict[str, object]:
    """The columns of a new contact the user adds (checked already; `values` its custom
    values): the one place a contact row is built, whether `add` creates one or an import
    inserts thousands."""
    return {
        "uuid": time_ordered_uuid(),
        "tenant": user.tenant_id,
        "owner": user.id,
        "email": fields.email.strip(),
        "email_normalized": normalize_email(fields.email),
        "first_name": fields.first_name,
        "last_name": fields.last_name,
        "phone": fields.phone,
        "company": fields.company,
        "search_text": _search_text(fields, values),
        "created_at": now,
        "updated_at": now,
    }


def add(user: User, web: crm_pb2.WebContact) -> Contact:
    """A new contact owned by the user."""
    fields = fields_of(web)
    values = check_fields(by_name(user.tenant_id), fields, web.custom_fields)
    try:
        with database.atomic():
            contact = Contact.create(**contact_row(user, fields, values, utcnow()))
            _write_values(contact, values)
    except peewee.IntegrityError:
        raise duplicate() from None
    return contact


def create(user_id: int | None, web: crm_pb2.WebContact) -> crm_pb2.WebContact:
    return messages.to_web(add(signed_in(user_id), web))


def get(user_id: int | None, contact_id: str) -> crm_pb2.WebContact:
    return messages.to_web(find(signed_in(user_id), contact_id))


def update(user_id: int | None, contact_id: str, web: crm_pb2.WebContact) -> None:
    user = signed_in(user_id)
    contact = find(user, contact_id)
    fields = fields_of(web)
    values = check_fields(by_name(user.tenant_id), fields, web.custom_fields)
    try:
        with database.atomic():
            contact.email = web.email.strip()
            contact.email_normalized = normalize_email(web.email)
            contact.first_name, contact.last_name = web.first_name, web.last_name
            contact.phone, contact.company = web.phone, web.company
            contact.updated_at = utcnow()
            contact.search_text = _search_text(fields, values)
            contact.save()
            _write_values(contact, values)
    except peewee.IntegrityError:
        raise duplicate() from None


def delete(user_id: int | None, contact_id: str) -> None:
    """Soft delete; succeeds whatever the id (the voyzu contract)."""
    user = signed_in(user_id)
    try:
        parsed = uuid.UUID(contact_id)
    except ValueError:
        return
    Contact.update(deleted_at=utcnow(), updated_at=utcnow()).where(
        visible_to(user), Contact.uuid == parsed
    ).execute()


def matching(user: User, search: crm_pb2.ContactsSearchInput) -> peewee.ModelSelect:
    """The contacts the user may see in which every word of the search is found (in the
    folded search document, where no word can span two fields), in the asked order."""
    if len(search.search_text) > MAX_SEARCH_TEXT:
        raise invalid_argument(f"SearchText must be at most {MAX_SEARCH_TEXT} characters.")
    if search.sort_by and search.sort_by not in SORTABLE:
        raise invalid_argument(f"SortBy must be one of {', '.join(SORTABLE)}.")
    found = documents.words(search.search_text)
    column, descending = _sort(search)
    query = Contact.select().where(visible_to(user))
    for word in found:
        # LIKE, written out (Peewee would make it GLOB on SQLite): documents and words are
        # folded already. PostgreSQL's ILIKE lowered every candidate document once more, a
        # third of the database's CPU for a word 1,000 of 1,000,000 contacts hold.
        query = query.where(
            peewee.NodeList(
                (
                    Contact.search_text,
                    peewee.SQL("LIKE"),
                    peewee.Value(documents.like_pattern(word), converter=False),
                    peewee.SQL("ESCAPE '\\'"),
                ),
                parens=True,
            )
        )
    if descending:
        query = query.order_by(column.desc(), Contact.id.desc())
    else:
        query = query.order_by(column, Contact.id)
    if isinstance(database.obj, peewee.SqliteDatabase):
        query = _sqlite_plan(query, found, column)
    return query


def _sort(search: crm_pb2.ContactsSearchInput) -> tuple[peewee.Field, bool]:
    return SORTABLE.get(search.sort_by or "CreatedDate", Contact.created_at), search.sort_descending


def _sqlite_plan(
    query: peewee.ModelSelect, found: list[str], column: peewee.Field
) -> peewee.ModelSelect:
    """SQLite cannot weigh the trigram index against a sort index, so choose here: take
    the rarest few trigrams of each word (ranked by counting, up to FTS_FIRST_LIMIT, the
    contacts holding each); when at most FTS_FIRST_LIMIT contacts hold all of them, start
    from those (LIKE then checks the words whole), else walk the sort order's index,
    along which matches are dense enough to fill a page soon.
    (PostgreSQL's planner makes that choice itself, from its statistics.)"""
    chosen: list[str] = []
    for word in found:
        terms = documents.trigrams(word)
        if len(terms) > RAREST_TERMS:
            terms = sorted(terms, key=_holding)[:RAREST_TERMS]
        chosen += terms
    if chosen:
        holding = database.execute_sql(
            "SELECT rowid FROM contact_search WHERE contact_search MATCH ? LIMIT ?",
            (documents.fts_terms(chosen), FTS_FIRST_LIMIT + 1),
        ).fetchall()
        if len(holding) <= FTS_FIRST_LIMIT:
            # Looked up by rowid, not through an index of the tenant's contacts.
            # One JSON parameter, not thousands: binding them cost more than the lookups.
            rowids = json.dumps([rowid for (rowid,) in holding])
            return query.from_(peewee.NodeList((Contact, peewee.SQL("NOT INDEXED")))).where(
                Contact.id.in_(peewee.SQL("(SELECT value FROM json_each(?))", [rowids]))
            )
    index = peewee.SQL(f'INDEXED BY "{SORT_INDEXES[column.name]}"')
    return query.from_(peewee.NodeList((Contact, index)))


def _holding(term: str) -> int:
    """How many contacts (of every tenant) hold the trigram, counting to one past
    FTS_FIRST_LIMIT at most."""
    return database.execute_sql(
        "SELECT count(*) FROM (SELECT rowid FROM contact_search"
        " WHERE contact_search MATCH ? LIMIT ?)",
        (documents.fts_terms([term]), FTS_FIRST_LIMIT + 1),
    ).fetchone()[0]


def search(user_id: int | None, given: crm_pb2.ContactsSearchInput) -> crm_pb2.ContactsDatatable:
    """One page of the contacts the user may see that match the search, with their custom
    values (one query by the page's ids) and a count that stops COUNT_AHEAD past the page."""
    user = signed_in(user_id)
    page = given.page or 1
    size = given.page_size or DEFAULT_PAGE_SIZE
    if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
        raise invalid_argument(
            f"Page must be at least 1 and PageSize between 1 and {MAX_PAGE_SIZE}."
        )
    query = matching(user, given)
    start = (page - 1) * size
    # One query finds the page and counts past it: the ids of the page's matches and of up
    # to COUNT_AHEAD + 1 after them. Skipping `start` rows reads only the sort index (an
    # index-only scan on PostgreSQL), and just the page's rows are read whole. A second
    # query to count searched everything again (on PostgreSQL the trigram index and every
    # candidate row: half the database's work for a substring).
    ahead = query.select(Contact.id).limit(size + COUNT_AHEAD + 1).offset(start)
    matched = [contact_id for (contact_id,) in database.execute(ahead).fetchall()]
    total = start + len(matched) if matched else _count(query, start)
    ids = matched[:size]
    where = {row.id: row for row in Contact.select().where(Contact.id.in_(ids))}
    rows = [where[contact_id] for contact_id in ids]
    values: dict[int, dict[str, str]] = {row.id: {} for row in rows}
    if rows:
        for value in CustomFieldValue.select().where(CustomFieldValue.contact.in_(list(values))):
            values[value.contact_id][value.name] = value.value
    return crm_pb2.ContactsDatatable(
        rows=[messages.to_web(contact, values[contact.id]) for contact in rows],
        total_count=total,
        page=page,
        page_size=size,
    )


def _count(query: peewee.ModelSelect, limit: int) -> int:
    """How many contacts the query finds, counting to `limit` at most: a page past the
    last match is empty, and the matches before it are all there are (exact)."""
    counted = query.order_by().limit(limit).select(peewee.SQL("1"))
    total = peewee.Select([counted.alias("matches")], [peewee.fn.COUNT(peewee.SQL("*"))])
    return database.execute(total).fetchone()[0]
