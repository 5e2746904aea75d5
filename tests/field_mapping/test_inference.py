"""Type inference by elimination, and the types sources declare."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from field_mapping.inference import (
    hubspot_declared_type,
    hubspot_declared_types,
    infer,
    typeform_declared_type,
)
from field_mapping.types import FieldType

T = FieldType


@pytest.mark.parametrize(
    ("value", "name", "expected"),
    [
        (True, "", T.BOOLEAN),
        ("false", "", T.BOOLEAN),
        ("TRUE", "", T.BOOLEAN),
        (42, "", T.INTEGER),
        ("42", "", T.INTEGER),
        ("-7", "", T.INTEGER),
        ("007", "zip", T.ENUM),  # a leading zero is a code, not a number
        (9.95, "", T.DECIMAL),
        ("9.95", "", T.DECIMAL),
        (Decimal("20.00"), "", T.DECIMAL),
        (1_700_000_000, "created", T.DATETIME),
        (1_700_000_000, "trial_end", T.DATETIME),
        (1_700_000_000, "canceled_at", T.DATETIME),
        (1_700_000_000_000, "createdate_at", T.DATETIME),  # epoch milliseconds
        ("1700000000", "period_end", T.DATETIME),
        (1_700_000_000, "amount", T.INTEGER),  # a number without a time name stays a number
        (109_757_538, "start", T.INTEGER),  # 1973: out of the plausible range
        ("2024-01-02T03:04:05Z", "", T.DATETIME),
        ("2024-01-02T03:04:05.678+02:00", "", T.DATETIME),
        (datetime(2024, 1, 2, tzinfo=UTC), "", T.DATETIME),
        ("2024-01-02", "", T.DATE),
        ("2024-02-30", "", T.ENUM),
        (date(2024, 1, 2), "", T.DATE),
        ("Jane@Example.com", "", T.EMAIL),
        ("jane@", "", T.ENUM),
        ("+14155552671", "", T.PHONE),
        ("(415) 555-2671", "phone", T.PHONE),
        ("(415) 555-2671", "notes", T.ENUM),
        ("active", "status", T.ENUM),
        ("Pro monthly", "nickname", T.ENUM),
        ("Jenny Rosen", "name", T.STRING),
        ("Jenny", "firstName", T.STRING),
        ("My First Test Charge", "description", T.STRING),
        ("x" * 65, "", T.STRING),
        ("two\nlines", "", T.STRING),
        (float("nan"), "", T.STRING),
        (None, "", None),
        ({"a": 1}, "", None),
        ([1, 2], "", None),
    ],
)
def test_precedence_table(value: Any, name: str, expected: FieldType | None) -> None:
    assert infer(value, name) is expected


def test_enum_length_is_configurable() -> None:
    assert infer("a" * 10, enum_max_length=5) is T.STRING


def test_phone_region() -> None:
    assert infer("06 12 34 56 78", "mobile", region="FR") is T.PHONE


@pytest.mark.parametrize(
    ("question", "value_type", "expected"),
    [
        ("number", "number", T.INTEGER),
        ("rating", "number", T.INTEGER),
        ("opinion_scale", "number", T.INTEGER),
        ("yes_no", "boolean", T.BOOLEAN),
        ("legal", "boolean", T.BOOLEAN),
        ("date", "date", T.DATE),
        ("email", "email", T.EMAIL),
        ("phone_number", "phone_number", T.PHONE),
        ("multiple_choice", "choice", T.ENUM),
        ("dropdown", "choice", T.ENUM),
        ("multiple_choice", "choices", T.STRING),
        ("short_text", "text", T.STRING),
        ("payment", "payment", T.DECIMAL),
        ("matrix", "text", None),
    ],
)
def test_typeform_declared(question: str, value_type: str, expected: FieldType | None) -> None:
    assert typeform_declared_type(question, value_type) is expected


@pytest.mark.parametrize(
    ("name", "hs_type", "field_type", "expected"),
    [
        ("hs_email_optout", "bool", "booleancheckbox", T.BOOLEAN),
        ("lifecyclestage", "enumeration", "radio", T.ENUM),
        ("interests", "enumeration", "checkbox", T.STRING),
        ("birthday", "date", "date", T.DATE),
        ("createdate", "datetime", "date", T.DATETIME),
        ("createdate", "dateTime", "date", T.DATETIME),
        ("firstname", "string", "text", T.STRING),
        ("email", "string", "text", T.EMAIL),
        ("phone", "string", "phonenumber", T.PHONE),
        ("amount", "number", "number", T.DECIMAL),
        ("odd", "object_coordinates", "text", None),
    ],
)
def test_hubspot_declared(name: str, hs_type: str, field_type: str, expected: FieldType | None) -> None:
    assert hubspot_declared_type(name, hs_type, field_type) is expected


def test_hubspot_declared_from_property_definitions() -> None:
    properties: list[dict[str, Any]] = [
        {"name": "lifecyclestage", "type": "enumeration", "fieldType": "radio", "options": []},
        {"name": "weird", "type": "object_coordinates", "fieldType": "text"},
    ]
    assert hubspot_declared_types(properties) == {"lifecyclestage": T.ENUM}
