"""Dates as the voyzu API writes them: ISO-8601 UTC with milliseconds and a `Z`."""

from __future__ import annotations

from datetime import datetime


def iso(moment: datetime) -> str:
    """A naive UTC datetime (as the database holds them) in voyzu's form."""
    return moment.isoformat(timespec="milliseconds") + "Z"
