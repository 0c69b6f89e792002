"""A customer's custom fields, and checking contact values against them."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date

from crm.v1 import crm_pb2

from server.crm import messages
from server.database.connection import database, lock_rows
from server.database.models import CustomField, Tenant
from server.errors import invalid_argument

TYPES = ("text", "number", "date", "boolean", "select")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 _-]{0,99}")
#: A JSON number, which JavaScript's Number() reads too: ASCII digits only, no `_`,
#: no padding, no hex, no Infinity (Python's float() takes all of those).
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
#: A calendar date as YYYY-MM-DD (date.fromisoformat also takes 20240101 and 2024-W01-1).
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def definitions(tenant_id: int) -> list[CustomField]:
    return list(
        CustomField.select().where(CustomField.tenant == tenant_id).order_by(CustomField.name)
    )


def names(tenant_id: int) -> list[str]:
    """The customer's custom field names, in the order imports and exports use them."""
    return [field.name for field in definitions(tenant_id)]


def check_definitions(fields: Sequence[crm_pb2.CustomFieldDefinition]) -> list[str]:
    problems = []
    seen: set[str] = set()
    for index, field in enumerate(fields):
        where = f"Fields[{index}]"
        if not _NAME.fullmatch(field.name):
            problems.append(
                f"{where}.Name must start with a letter and use letters, digits, spaces, - or _ (at most 100)."
            )
        elif field.name.lower() in seen:
            problems.append(f"{where}.Name {field.name!r} is given twice.")
        seen.add(field.name.lower())
        if field.type not in TYPES:
            problems.append(f"{where}.Type must be one of {', '.join(TYPES)}.")
        elif field.type == "select" and not field.options:
            problems.append(f"{where}.Options must list the allowed values of a select field.")
        elif field.type != "select" and field.options:
            problems.append(f"{where}.Options is only for select fields.")
    return problems


def define(
    tenant_id: int, fields: Sequence[crm_pb2.CustomFieldDefinition]
) -> crm_pb2.CustomFieldList:
    """Create or change each field (matched by name, ignoring case), all or none;
    answers every field the customer has afterwards."""
    problems = check_definitions(fields)
    if problems:
        raise invalid_argument(" ".join(problems))
    with database.atomic():
        # Two definitions of one new field run one after the other (PostgreSQL locks the
        # tenant's row), so the second changes what the first created.
        lock_rows(Tenant.select(Tenant.id).where(Tenant.id == tenant_id))
        existing = {field.name.lower(): field for field in definitions(tenant_id)}
        for field in fields:
            row = existing.get(field.name.lower())
            options = json.dumps(list(field.options))
            if row is None:
                CustomField.create(
                    tenant=tenant_id, name=field.name, type=field.type, options=options
                )
            else:
                row.name, row.type, row.options = field.name, field.type, options
                row.save()
    return crm_pb2.CustomFieldList(
        fields=[messages.custom_field(field) for field in definitions(tenant_id)]
    )


def by_name(tenant_id: int) -> dict[str, CustomField]:
    """The customer's fields keyed by their lower-cased name, as values name them: read
    once per call (an import checks every row against one reading)."""
    return {field.name.lower(): field for field in definitions(tenant_id)}


def check_values(
    known: Mapping[str, CustomField], values: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The values keyed by each field's canonical name, and what is wrong with them."""
    problems: list[str] = []
    canonical: dict[str, str] = {}
    for name, value in values.items():
        field = known.get(name.lower())
        if field is None:
            problems.append(f"CustomFields.{name} is not a custom field of this customer.")
            continue
        if value != "" and not _valid(field, value):
            problems.append(f"CustomFields.{name} must be {_expected(field)}.")
            continue
        canonical[field.name] = value
    return canonical, problems


def _valid(field: CustomField, value: str) -> bool:
    if field.type == "number":
        return _NUMBER.fullmatch(value) is not None and math.isfinite(float(value))
    if field.type == "date":
        if _DATE.fullmatch(value) is None:
            return False
        try:
            date.fromisoformat(value)
        except ValueError:  # no such day: 2023-02-29
            return False
        return True
    if field.type == "boolean":
        return value in ("true", "false")
    if field.type == "select":
        return value in json.loads(field.options)
    return len(value) <= 1000


def _expected(field: CustomField) -> str:
    return {
        "number": "a finite JSON number such as -12.5e3",
        "date": "a date as YYYY-MM-DD",
        "boolean": "true or false",
        "select": "one of " + ", ".join(json.loads(field.options)),
        "text": "text of at most 1000 characters",
    }[field.type]
