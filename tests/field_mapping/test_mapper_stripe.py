"""Mapping Stripe customers, subscriptions, invoices and charges (Stripe's own example objects)."""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import Decimal

from field_mapping import FieldType, Mapper, is_field_name, is_hubspot_name
from tests.field_mapping.conftest import record, stripe_object, typed_values

T = FieldType


def test_customer(mapper: Mapper) -> None:
    customer = stripe_object(
        "customer",
        email=" Jenny.Rosen@Example.com",
        phone="415-555-2671",
        name="Jenny Rosen",
        metadata={"tier": "gold", "seats": "12", "beta": "true"},
    )
    mapped = mapper.map_record(record("stripe", "customers", customer))
    typed = typed_values(mapped)
    assert typed["stripe_customer_email"] == (T.EMAIL, "jenny.rosen@example.com")
    assert typed["stripe_customer_phone"] == (T.PHONE, "+14155552671")
    assert typed["stripe_customer_name"] == (T.STRING, "Jenny Rosen")
    assert typed["stripe_customer_created"] == (T.DATETIME, datetime(2009, 2, 13, 23, 31, 30, tzinfo=UTC))
    assert typed["stripe_customer_delinquent"] == (T.BOOLEAN, False)
    assert typed["stripe_customer_balance"] == (T.INTEGER, 0)
    assert typed["stripe_customer_currency"] == (T.ENUM, "usd")
    assert typed["stripe_customer_metadata_tier"] == (T.ENUM, "gold")
    assert typed["stripe_customer_metadata_seats"] == (T.INTEGER, 12)
    assert typed["stripe_customer_metadata_beta"] == (T.BOOLEAN, True)
    # ids, references, API bookkeeping and empty objects give no field
    for skipped in (
        "stripe_customer_id",
        "stripe_customer_object",
        "stripe_customer_livemode",
        "stripe_customer_invoice_prefix",
    ):
        assert skipped not in mapped.values
    assert set(mapped.created) == set(typed)
    assert not mapped.problems and not mapped.widenings


def test_customer_nulls_create_nothing_but_clear_known_fields(mapper: Mapper) -> None:
    mapper.map_record(record("stripe", "customers", stripe_object("customer", email="a@example.com")))
    mapped = mapper.map_record(record("stripe", "customers", stripe_object("customer")))
    assert mapped.values["stripe_customer_email"].value is None  # the customer's e-mail was removed
    assert "stripe_customer_phone" not in mapped.values  # never seen with a value: no field
    assert mapped.created == ()


def test_subscription_rules_and_hoisted_item(mapper: Mapper) -> None:
    subscription = stripe_object("subscription", status="trialing", trial_end=1_800_000_000)
    subscription["items"]["data"][0]["price"]["nickname"] = " Pro Monthly "
    mapped = mapper.map_record(record("stripe", "subscriptions", subscription))
    typed = typed_values(mapped)
    assert typed["payment_plan"] == (T.ENUM, "pro monthly")
    assert typed["subscription_status"] == (T.ENUM, "trialing")
    assert typed["mrr"] == (T.DECIMAL, Decimal("20.00"))
    assert typed["trial_end"] == (T.DATETIME, datetime(2027, 1, 15, 8, 0, tzinfo=UTC))
    assert mapped.values["mrr"].origin.kind == "rule"
    assert mapped.values["mrr"].origin.rule == 2
    # the first item's price and plan sit on the subscription; the rules' paths are left to them
    assert typed["stripe_subscription_price_currency"] == (T.ENUM, "usd")
    assert typed["stripe_subscription_price_recurring_interval"] == (T.ENUM, "month")
    assert typed["stripe_subscription_price_product"] == (T.ENUM, "prod_QXg1hqf4jFNsqG")
    assert typed["stripe_subscription_plan_interval"] == (T.ENUM, "month")
    assert typed["stripe_subscription_quantity"] == (T.INTEGER, 1)
    assert mapped.values["stripe_subscription_quantity"].origin.path == "items.data[0].quantity"
    assert "stripe_subscription_price_unit_amount" not in mapped.values
    assert "stripe_subscription_price_nickname" not in mapped.values
    assert "stripe_subscription_status" not in mapped.values
    assert typed["stripe_subscription_cancel_at_period_end"] == (T.BOOLEAN, True)
    assert typed["stripe_subscription_current_period_end"] == (
        T.DATETIME,
        datetime(2000, 12, 8, 15, 2, 53, tzinfo=UTC),
    )
    assert "stripe_subscription_customer" not in mapped.values
    assert [(h.kind, h.value) for h in mapped.identities] == [("stripe_customer", "cus_QXg1o8vcGmoR32")]


def test_invoice(mapper: Mapper) -> None:
    invoice = stripe_object("invoice", customer_email="Jenny@Example.com", status="paid")
    mapped = mapper.map_record(record("stripe", "invoices", invoice))
    typed = typed_values(mapped)
    assert typed["stripe_invoice_status"] == (T.ENUM, "paid")
    assert typed["stripe_invoice_amount_due"] == (T.INTEGER, 1000)
    assert typed["stripe_invoice_period_end"] == (T.DATETIME, datetime(2009, 2, 13, 23, 31, 30, tzinfo=UTC))
    assert typed["stripe_invoice_customer_email"] == (T.EMAIL, "jenny@example.com")
    assert not any(name.startswith("stripe_invoice_lines") for name in typed)  # lists of objects
    assert "stripe_invoice_hosted_invoice_url" not in mapped.values
    kinds = {(h.kind, h.value) for h in mapped.identities}
    assert kinds == {("stripe_customer", "cus_QXg1o8vcGmoR32"), ("email", "jenny@example.com")}


def test_charge(mapper: Mapper) -> None:
    charge = stripe_object("charge", customer={"id": "cus_9", "object": "customer"})
    charge["billing_details"]["email"] = "JR@example.com"
    mapped = mapper.map_record(record("stripe", "charges", charge))
    typed = typed_values(mapped)
    assert typed["stripe_charge_amount"] == (T.INTEGER, 100)
    assert typed["stripe_charge_payment_method_details_card_brand"] == (T.ENUM, "visa")
    assert typed["stripe_charge_billing_details_name"] == (T.STRING, "Jenny Rosen")
    for skipped in (
        "stripe_charge_receipt_url",
        "stripe_charge_payment_method_details_card_last4",
        "stripe_charge_payment_method_details_card_fingerprint",
        "stripe_charge_source_client_secret",
    ):
        assert skipped not in mapped.values
    kinds = {(h.kind, h.value) for h in mapped.identities}
    assert kinds == {("stripe_customer", "cus_9"), ("email", "jr@example.com")}


def test_deleted_customer_still_names_its_contact(mapper: Mapper) -> None:
    mapped = mapper.map_record(record("stripe", "customers", stripe_object("deleted_customer")))
    assert mapped.identity("stripe_customer") is not None
    assert "stripe_customer_deleted" in mapped.values


def test_names_are_valid_and_short(mapper: Mapper) -> None:
    for kind, stream in (
        ("customer", "customers"),
        ("subscription", "subscriptions"),
        ("invoice", "invoices"),
        ("charge", "charges"),
    ):
        mapper.map_record(record("stripe", stream, stripe_object(kind)))
    names = [d.name for d in mapper.definitions()]
    assert len(names) == len(set(names))
    assert all(is_field_name(n) and is_hubspot_name(n) for n in names)


def test_objects_decoded_as_ordered_dicts(mapper: Mapper) -> None:
    # The Stripe SDK decodes JSON with object_pairs_hook=OrderedDict: nested objects are not plain dicts.
    raw = json.dumps(stripe_object("customer", email="a@example.com"))
    customer = json.loads(raw, object_pairs_hook=OrderedDict)
    mapped = mapper.map_record(record("stripe", "customers", customer))
    assert mapped.values["stripe_customer_discount_source_type"].value == "coupon"
    assert "stripe_customer_address" not in mapped.values
    assert mapped.identity("email") is not None


def test_expanded_customer_and_product(mapper: Mapper) -> None:
    subscription = stripe_object(
        "subscription", customer={"id": "cus_7", "object": "customer", "email": "x@example.com"}
    )
    subscription["items"]["data"][0]["price"]["product"] = {
        "id": "prod_1",
        "object": "product",
        "name": "Pro",
    }
    mapped = mapper.map_record(record("stripe", "subscriptions", subscription))
    assert mapped.values["stripe_subscription_price_product_name"].value == "Pro"
    assert {(h.kind, h.value) for h in mapped.identities} == {
        ("stripe_customer", "cus_7"),
        ("email", "x@example.com"),
    }
    assert not any(name.startswith("stripe_subscription_customer") for name in mapped.values)
