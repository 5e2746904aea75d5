"""Field names: valid, readable, unique, and short enough for PostgreSQL and HubSpot."""

from __future__ import annotations

import pytest

from field_mapping import FieldMappingConfig, Mapper
from field_mapping.naming import FIELD_NAME_MAX, field_name, is_field_name, label_for, name_part, unique_name
from tests.field_mapping.conftest import record


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("firstName", "first_name"),
        ("plan-tier", "plan_tier"),
        ("a.b c", "a_b_c"),
        ("__x__", "x"),
        ("Zip Code", "zip_code"),
    ],
)
def test_name_part(text: str, part: str) -> None:
    assert name_part(text) == part


def test_field_name_joins_parts() -> None:
    assert field_name("stripe_subscription", ("status",)) == "stripe_subscription_status"
    assert field_name("stripe_customer", ("metadata", "Plan Tier")) == "stripe_customer_metadata_plan_tier"


def test_long_names_are_cut_with_a_stable_hash() -> None:
    parts = ("payment_settings", "payment_method_options", "bancontact", "preferred_language")
    name = field_name("stripe_subscription", parts)
    assert len(name) == FIELD_NAME_MAX and is_field_name(name)
    assert name == field_name("stripe_subscription", parts)
    other = field_name("stripe_subscription", (*parts[:-1], "preferred_languages"))
    assert other != name


def test_unique_name_differs_per_path() -> None:
    first = unique_name("stripe_customer_metadata_plan_tier", "stripe.customers:metadata.plan_tier")
    second = unique_name("stripe_customer_metadata_plan_tier", 'stripe.customers:metadata."plan-tier"')
    assert first != second and is_field_name(first) and is_field_name(second)


def test_label() -> None:
    assert label_for("stripe_subscription_status") == "Stripe subscription status"


def test_colliding_paths_get_distinct_fields() -> None:
    payload = {"id": "cus_1", "metadata": {"plan_tier": "gold", "plan-tier": "silver"}}
    mapped = Mapper(FieldMappingConfig()).map_record(record("stripe", "customers", payload))
    assert sorted(v.value for v in mapped.values.values()) == ["gold", "silver"]
    assert "stripe_customer_metadata_plan_tier" in mapped.values


def test_rule_field_names_are_not_taken_by_automatic_fields() -> None:
    rule = {
        "source": "stripe",
        "stream": "customers",
        "path": "name",
        "field": "stripe_customer_email",
        "type": "string",
    }
    mapped = Mapper(FieldMappingConfig.model_validate({"rules": [rule]})).map_record(
        record("stripe", "customers", {"id": "c", "name": "Jane", "email": "jane@example.com"})
    )
    assert mapped.values["stripe_customer_email"].value == "Jane"
    [auto] = [v for v in mapped.values.values() if v.origin.kind == "auto"]
    assert auto.value == "jane@example.com" and auto.field.startswith("stripe_customer_email_")
