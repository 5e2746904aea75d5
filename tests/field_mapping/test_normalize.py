"""Phone extensions: kept in the identity, so two people on one office line stay two contacts."""

from __future__ import annotations

from typing import Any

import pytest

from field_mapping import FieldDefinition, FieldType, Origin
from field_mapping.config import IdentityConfig
from field_mapping.convert import CONVERTERS
from field_mapping.identity import extract_identities, identity_hints
from field_mapping.normalize import dialable, normalize_phone
from field_mapping.registry import FieldRegistry
from tests.field_mapping.conftest import stripe_object

US = IdentityConfig()


@pytest.mark.parametrize(
    "raw",
    [
        "+1 415 555 2671 ext. 12",
        "(415) 555-2671 x12",
        "415-555-2671 extension 12",
        "+14155552671;ext=12",
        "tel:+1-415-555-2671;ext=12",
    ],
)
def test_one_extension_in_any_format_is_one_number(raw: str) -> None:
    assert normalize_phone(raw, "US") == ("+14155552671;ext=12", True)


def test_extensions_tell_numbers_apart() -> None:
    numbers = {normalize_phone(raw, "US")[0] for raw in ("+1 415 555 2671 ext. 12", "(415) 555-2671 x34")}
    assert numbers == {"+14155552671;ext=12", "+14155552671;ext=34"}
    assert normalize_phone("(415) 555-2671", "US") == ("+14155552671", True)


@pytest.mark.parametrize(
    ("number", "expected"),
    [("+14155552671;ext=12", "+14155552671"), ("+14155552671", "+14155552671"), ("555", "555")],
)
def test_dialable_drops_the_extension(number: str, expected: str) -> None:
    assert dialable(number) == expected


def test_two_people_on_one_office_line_are_two_identities() -> None:
    first = extract_identities(
        "stripe", "customers", stripe_object("customer", phone="+1 415 555 2671 ext. 12"), US
    )
    second = extract_identities(
        "stripe", "customers", stripe_object("customer", phone="(415) 555-2671 x34"), US
    )
    again = identity_hints("stripe", {"phone": "415.555.2671 x12"}, US)
    phones = [[h for h in hints if h.kind == "phone"] for hints in (first, second, again)]
    assert [[(h.value, h.valid) for h in hint] for hint in phones] == [
        [("+14155552671;ext=12", True)],
        [("+14155552671;ext=34", True)],
        [("+14155552671;ext=12", True)],
    ]


def test_phone_field_keeps_a_sendable_e164_number() -> None:
    assert CONVERTERS[FieldType.PHONE]("+1 415 555 2671 ext. 12", "US") == "+14155552671"
    origin = Origin("auto", "stripe", "customers", "phone")
    registry = FieldRegistry()
    state = registry.add(FieldDefinition("stripe_customer_phone", FieldType.PHONE, "Phone", origin))
    problems: list[Any] = []
    value = registry.accept(state, "(415) 555-2671 x34", origin, problems, [])
    assert (value.type, value.value, problems) == (FieldType.PHONE, "+14155552671", [])
