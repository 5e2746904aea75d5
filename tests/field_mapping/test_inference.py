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
        ("+44 7911 123456", "", T.PHONE),
        ("+44 7911 123456", "phone", T.PHONE),
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


@pytest.mark.parametrize(
    ("value", "name", "expected"),
    [
        ("4155552671", "phone", T.PHONE),  # Stripe's `phone`, digits only
        ("4155552671", "mobilephone", T.PHONE),
        ("4155552671", "phoneNumber", T.PHONE),
        ("4155552671", "fax", T.PHONE),
        ("4155552671", "tel", T.PHONE),
        ("4155552671", "work_tel", T.PHONE),
        (4155552671, "phone", T.PHONE),  # a Segment.com trait sent as a JSON number
        ("+14155552671", "phone", T.PHONE),
        ("3", "phone_count", T.INTEGER),  # not a valid number: the name alone decides nothing
        ("4155552671", "hotel", T.INTEGER),  # `tel` only as a whole word
        ("4155552671", "amount", T.INTEGER),
        (1_700_000_000, "phone_verified_at", T.DATETIME),  # a time about a phone
    ],
)
def test_phone_names_win_over_integers(value: Any, name: str, expected: FieldType) -> None:
    assert infer(value, name) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12345678901234567", T.STRING),  # a Segment.com trait the number column would round
        (12_345_678_901_234_567, T.STRING),
        ("9007199254740993", T.STRING),
        (9_007_199_254_740_993, T.STRING),
        (-9_007_199_254_740_993, T.STRING),
        ("123456789012345678901234567890", T.STRING),
        ("12345678901234.567", T.STRING),
        (Decimal("12345678901234.567"), T.STRING),
        (Decimal("NaN"), T.STRING),
        ("9007199254740992", T.INTEGER),  # 2**53 is the last integer a double holds exactly
        (9_007_199_254_740_992, T.INTEGER),
        ("1234567890123.45", T.DECIMAL),  # 15 significant digits
        (Decimal("12345678901234.500"), T.DECIMAL),
    ],
)
def test_numbers_a_double_cannot_hold_are_text(value: Any, expected: FieldType) -> None:
    assert infer(value) is expected


@pytest.mark.parametrize(
    "name",
    [
        "created",
        "updated",
        "canceled_at",
        "ended_at",
        "cancel_at",
        "webhooks_delivered_at",
        "current_period_start",
        "current_period_end",
        "period_start",
        "period_end",
        "trial_start",
        "trial_end",
        "start",
        "end",
        "start_date",
        "due_date",
        "date",
        "available_on",
        "computed_timestamp",
        "billing_cycle_anchor",
        "next_payment_attempt",
        "redeem_by",
        "createdAt",
        "date_created",
        "last_updated",
        "paused_until",
    ],
)
def test_epoch_names_of_stripe_and_others(name: str) -> None:
    assert infer(1_234_567_890, name) is T.DATETIME


@pytest.mark.parametrize(
    "name",
    [
        "lifetime_value_to_date",
        "year_to_date",
        "account_number_end",
        "range_end",
        "head_start",
        "updates",
        "creator",
        "dated_total",
        "at",
        "format",
    ],
)
def test_numbers_whose_names_only_look_like_times(name: str) -> None:
    assert infer(1_500_000_000, name) is T.INTEGER


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
