"""Transforms of mapping rules, and e-mail and phone normalization."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given
from hypothesis import strategies as st

from field_mapping.normalize import _SIMPLE_EMAIL, normalize_email, normalize_phone
from field_mapping.transforms import (
    InvalidValue,
    TransformError,
    build_transforms,
    cents_to_amount,
    e164,
    lower,
    trim,
    unix_to_datetime,
    value_map,
)


@pytest.mark.parametrize(
    ("transform", "raw", "expected"),
    [
        (trim, "  pro \t", "pro"),
        (lower, "PRO Plan", "pro plan"),
        (cents_to_amount, 2000, Decimal("20.00")),
        (cents_to_amount, 1999, Decimal("19.99")),
        (cents_to_amount, "2000", Decimal("20.00")),
        (cents_to_amount, -5, Decimal("-0.05")),
        (cents_to_amount, 2000.0, Decimal("20.00")),  # a whole number sent as a float
        (cents_to_amount, Decimal("1999"), Decimal("19.99")),
        (unix_to_datetime, 1_700_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (unix_to_datetime, "1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (e164("US"), "(415) 555-2671", "+14155552671"),
        (e164("FR"), "01 42 68 53 00", "+33142685300"),
        (e164("US"), "+1 415 555 2671 ext. 12", "+14155552671"),  # E.164 has no extension
        (value_map({"active": "paying", "true": "yes"}), "active", "paying"),
        (value_map({"active": "paying", "true": "yes"}), True, "yes"),
        (value_map({"active": "paying"}), "past_due", "past_due"),
    ],
)
def test_transform_table(transform: Any, raw: Any, expected: Any) -> None:
    assert transform(raw) == expected


@pytest.mark.parametrize(
    ("transform", "raw"),
    [(trim, 3), (lower, None), (cents_to_amount, "ten"), (cents_to_amount, True), (unix_to_datetime, "soon")],
)
def test_transform_rejects_wrong_kind(transform: Any, raw: Any) -> None:
    with pytest.raises(TransformError):
        transform(raw)


@pytest.mark.parametrize(
    "raw",
    [19.99, "19.99", Decimal("19.5"), "2000.5", float("inf"), 10**30, "1e400"],  # last two: too many digits
)
def test_cents_to_amount_refuses_an_amount_that_is_not_whole_cents(raw: Any) -> None:
    with pytest.raises(TransformError, match="expected an integer amount in cents"):
        cents_to_amount(raw)


def test_transforms_pass_a_filter_that_matched_nothing() -> None:
    for transform in build_transforms(["trim", "cents_to_amount", "e164", {"map": {"a": "b"}}], "US"):
        assert transform([]) == []


def test_invalid_phone_is_kept_and_flagged() -> None:
    with pytest.raises(InvalidValue) as caught:
        e164("US")(" +1415555 ")
    assert caught.value.kept == "+1415555"


def test_build_transforms_in_order() -> None:
    chain = build_transforms(["trim", "lower", {"map": {"pro": "Pro plan"}}], "US")
    value: Any = "  PRO "
    for transform in chain:
        value = transform(value)
    assert value == "Pro plan"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jane.Doe@Example.com", ("jane.doe@example.com", True)),
        ("  jane.doe@example.com\t", ("jane.doe@example.com", True)),
        ("JANE.DOE@EXAMPLE.COM", ("jane.doe@example.com", True)),
        ("jane@mail.example.net", ("jane@mail.example.net", True)),
        ("jané@example.com", ("jané@example.com", True)),
        ("Jane@", ("jane@", False)),
        ("jane at example.com", ("jane at example.com", False)),
        ("jane@@example.com", ("jane@@example.com", False)),
        ("jane@example.test", ("jane@example.test", False)),
    ],
)
def test_normalize_email(raw: str, expected: tuple[str, bool]) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["+14155552671", "(415) 555-2671", "415-555-2671", "415 555 2671", "+1 415 555 2671", " 4155552671 "],
)
def test_phone_formats_normalize_to_one_number(raw: str) -> None:
    assert normalize_phone(raw, "US") == ("+14155552671", True)


@pytest.mark.parametrize("raw", ["+1415555", "555", "call me"])
def test_invalid_phone_kept_stripped(raw: str) -> None:
    assert normalize_phone(f" {raw} ", "US") == (raw, False)


def test_national_number_read_in_region() -> None:
    assert normalize_phone("06 12 34 56 78", "FR") == ("+33612345678", True)


@given(st.from_regex(_SIMPLE_EMAIL, fullmatch=True))
def test_email_fast_path_agrees_with_email_validator(address: str) -> None:
    value, valid = normalize_email(address)
    if not valid:
        return  # the fast path declined; the full validator decided alone
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:  # pragma: no cover - the failure this test exists to catch
        pytest.fail(f"fast path accepted {address!r}, email-validator rejects it: {exc}")
    assert checked.normalized.lower() == value
