"""HubSpot property bodies: valid type pairs, valid names, options, and value formatting."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from field_mapping import FieldDefinition, FieldType, HubSpotPushConfig, Origin
from field_mapping.hubspot_properties import (
    PROPERTY_TYPES,
    VALID_FIELD_TYPES,
    group_create,
    is_hubspot_name,
    property_create,
    property_name,
    property_value,
    pushable,
)

T = FieldType
STRIPE = Origin("auto", "stripe", "subscriptions", "status")


def test_every_field_type_has_a_valid_pair() -> None:
    assert set(PROPERTY_TYPES) == set(FieldType)
    for hs_type, field_type in PROPERTY_TYPES.values():
        assert field_type in VALID_FIELD_TYPES[hs_type]
    assert PROPERTY_TYPES[T.PHONE] == ("string", "phonenumber")
    assert PROPERTY_TYPES[T.ENUM] == ("string", "text")  # an enumeration refuses values it lacks
    assert PROPERTY_TYPES[T.BOOLEAN] == ("bool", "booleancheckbox")


def test_enum_property_is_text_so_new_values_are_never_refused() -> None:
    definition = FieldDefinition(
        "stripe_subscription_status",
        T.ENUM,
        "Stripe subscription status",
        STRIPE,
        options=("active", "canceled"),
    )
    body = property_create(definition, "crmhub")
    assert body == {
        "name": "stripe_subscription_status",
        "label": "Stripe subscription status",
        "type": "string",
        "fieldType": "text",
        "groupName": "crmhub",
        "description": "Set by crmhub from stripe.subscriptions status (automatic)",
        "formField": False,
    }


def test_bool_property_has_true_false_options() -> None:
    body = property_create(FieldDefinition("paid", T.BOOLEAN, "Paid", STRIPE), "crmhub")
    assert [o["value"] for o in body["options"]] == ["true", "false"]


def test_bad_internal_name_is_refused() -> None:
    assert is_hubspot_name("a" * 100) and not is_hubspot_name("a" * 101)
    assert not is_hubspot_name("Plan") and not is_hubspot_name("_x") and not is_hubspot_name("9x")
    with pytest.raises(ValueError, match="HubSpot internal name"):
        property_create(FieldDefinition("Plan", T.STRING, "Plan", STRIPE), "crmhub")


def test_group_and_pushable() -> None:
    assert group_create(HubSpotPushConfig(group_name="crm_hub", group_label="CRM hub")) == {
        "name": "crm_hub",
        "label": "CRM hub",
        "displayOrder": -1,
    }
    from_hubspot = FieldDefinition(
        "hubspot_firstname", T.STRING, "x", Origin("auto", "hubspot", "contacts", "properties.firstname")
    )
    from_stripe = FieldDefinition("mrr", T.DECIMAL, "MRR", STRIPE)
    assert pushable([from_hubspot, from_stripe]) == [from_stripe]


@pytest.mark.parametrize(
    ("ftype", "value", "text"),
    [
        (T.BOOLEAN, True, "true"),
        (T.DECIMAL, Decimal("20.00"), "20.00"),
        (T.INTEGER, 12, "12"),
        (T.DATETIME, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "1704164645000"),
        (T.DATE, date(1980, 5, 17), "1980-05-17"),
        (T.ENUM, "pro", "pro"),
        (T.STRING, None, ""),
    ],
)
def test_property_values(ftype: FieldType, value: Any, text: str) -> None:
    assert property_value(ftype, value) == text


def test_long_field_names_keep_distinct_property_names_within_100_characters() -> None:
    stem = "typeform_" + "a" * 85
    first, second = property_name("crmhub", stem + "_first"), property_name("crmhub", stem + "_second")
    assert first != second and len(first) == len(second) == 100
    assert first == property_name("crmhub", stem + "_first")  # the same each run
    assert is_hubspot_name(first) and is_hubspot_name(second)
    assert property_name("crmhub", "plan") == "crmhub_plan"  # short names stay readable
