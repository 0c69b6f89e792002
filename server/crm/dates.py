"""Dates as the voyzu API writes them: ISO-8601 UTC with milliseconds and a `Z`."""

from __future__ import annotations

from datetime import datetime


def iso(moment: datetime) -> str:
    """A naive UTC datetime (as the database holds them) in voyzu's form."""
    return moment.isoformat(timespec="milliseconds") + "Z"


def iso_stored(value: datetime | str) -> str:
    """`iso` of a timestamp as a database cursor answers it: PostgreSQL's datetime, or
    SQLite's text (`YYYY-MM-DD HH:MM:SS[.ffffff]`, as Peewee stores it), sliced without
    parsing, for exports of millions of rows."""
    if isinstance(value, datetime):
        return iso(value)
    if len(value) > 19:
        return f"{value[:10]}T{value[11:23]}Z"
    return f"{value[:10]}T{value[11:19]}.000Z"
