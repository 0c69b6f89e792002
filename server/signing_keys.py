"""Server signing keys, made once per database and shared by every process using it."""

from __future__ import annotations

import secrets

import peewee

from server.database.connection import database
from server.database.models import ServiceSecret


def signing_key(name: str) -> str:
    """The named secret, created on first use (racing creators agree on the first)."""
    row = ServiceSecret.get_or_none(ServiceSecret.name == name)
    if row is not None:
        return row.value
    try:
        with database.atomic():
            ServiceSecret.create(name=name, value=secrets.token_urlsafe(48))
    except peewee.IntegrityError:
        pass
    return ServiceSecret.get(ServiceSecret.name == name).value
