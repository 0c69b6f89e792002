"""Contacts as voyzu users see them: only their customer's, and among those only their
own, those shared with them, and those no user owns."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime

import grpc
import peewee
from crm.v1 import crm_pb2

from server.crm import messages
from server.crm.custom_fields import by_name, check_values
from server.crm.users import signed_in
from server.database.connection import database
from server.database.models import (
    Contact,
    CustomField,
    CustomFieldValue,
    User,
    UserShare,
    normalize_email,
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
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
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


def check(known: Mapping[str, CustomField], web: crm_pb2.WebContact) -> dict[str, str]:
    """The contact's custom values keyed by canonical name; INVALID_ARGUMENT listing
    everything wrong with it. `known` is `custom_fields.by_name` of its customer."""
    problems = []
    email = web.email.strip()
    if not email:
        problems.append("Email is required.")
    elif not _EMAIL.fullmatch(email):
        problems.append("Email is not a valid email address.")
    for name, limit in LIMITS.items():
        value = getattr(web, _SNAKE[name])
        if len(value) > limit:
            problems.append(f"{name} must be at most {limit} characters.")
    values, custom_problems = check_values(known, web.custom_fields)
    problems += custom_problems
    # PostgreSQL cannot store U+0000 (an imported cell may hold one; JSON callers are
    # refused by the gateway already).
    if any("\x00" in text for text in (*_texts(web), *web.custom_fields.values())):
        problems.append("Values must not contain NUL characters.")
    if problems:
        raise invalid_argument(" ".join(problems))
    return values


_SNAKE = {name: re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower() for name in LIMITS}


def _texts(web: crm_pb2.WebContact) -> tuple[str, ...]:
    return (web.first_name, web.last_name, web.email, web.phone, web.company)


def duplicate() -> ApiError:
    """What the live-email index refusing a contact means to the caller: a domain rule,
    not malformed input (the surface answers 540)."""
    return ApiError(
        grpc.StatusCode.ALREADY_EXISTS,
        "duplicate_contact",
        "A contact with this email already exists for this customer.",
    )


def _write_values(contact: Contact, values: dict[str, str]) -> None:
    CustomFieldValue.delete().where(CustomFieldValue.contact == contact).execute()
    for name, value in values.items():
        if value != "":
            CustomFieldValue.create(contact=contact, name=name, value=value)


def contact_row(user: User, web: crm_pb2.WebContact, now: datetime) -> dict[str, object]:
    """The columns of a new contact the user adds (checked already): the one place a
    contact row is built, whether `add` creates one or an import inserts thousands."""
    return {
        "uuid": uuid.uuid4(),
        "tenant": user.tenant_id,
        "owner": user.id,
        "email": web.email.strip(),
        "email_normalized": normalize_email(web.email),
        "first_name": web.first_name,
        "last_name": web.last_name,
        "phone": web.phone,
        "company": web.company,
        "created_at": now,
        "updated_at": now,
    }


def add(user: User, web: crm_pb2.WebContact) -> Contact:
    """A new contact owned by the user."""
    values = check(by_name(user.tenant_id), web)
    try:
        with database.atomic():
            contact = Contact.create(**contact_row(user, web, utcnow()))
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
    values = check(by_name(user.tenant_id), web)
    try:
        with database.atomic():
            contact.email = web.email.strip()
            contact.email_normalized = normalize_email(web.email)
            contact.first_name, contact.last_name = web.first_name, web.last_name
            contact.phone, contact.company = web.phone, web.company
            contact.updated_at = utcnow()
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
    query = Contact.select().where(visible_to(user))
    if len(search.search_text) > MAX_SEARCH_TEXT:
        raise invalid_argument(f"SearchText must be at most {MAX_SEARCH_TEXT} characters.")
    # Every word must match some field, ignoring case (all of Unicode's, on both backends).
    for word in search.search_text.lower().split():
        values = CustomFieldValue.select(CustomFieldValue.contact).where(
            peewee.fn.LOWER(CustomFieldValue.value).contains(word)
        )
        query = query.where(
            peewee.fn.LOWER(Contact.first_name).contains(word)
            | peewee.fn.LOWER(Contact.last_name).contains(word)
            | peewee.fn.LOWER(Contact.email_normalized).contains(word)
            | peewee.fn.LOWER(Contact.company).contains(word)
            | peewee.fn.LOWER(Contact.phone).contains(word)
            | Contact.id.in_(values)
        )
    if search.sort_by and search.sort_by not in SORTABLE:
        raise invalid_argument(f"SortBy must be one of {', '.join(SORTABLE)}.")
    column = SORTABLE.get(search.sort_by or "CreatedDate", Contact.created_at)
    order = column.desc() if search.sort_descending else column.asc()
    return query.order_by(order, Contact.id.desc() if search.sort_descending else Contact.id)


def search(user_id: int | None, given: crm_pb2.ContactsSearchInput) -> crm_pb2.ContactsDatatable:
    """One page of the contacts the user may see that match the search."""
    user = signed_in(user_id)
    page = given.page or 1
    size = given.page_size or DEFAULT_PAGE_SIZE
    if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
        raise invalid_argument(
            f"Page must be at least 1 and PageSize between 1 and {MAX_PAGE_SIZE}."
        )
    query = matching(user, given)
    rows = list(query.paginate(page, size).prefetch(CustomFieldValue))
    return crm_pb2.ContactsDatatable(
        rows=[messages.to_web(contact) for contact in rows],
        total_count=query.count(),
        page=page,
        page_size=size,
    )
