"""Stripe objects carry every top-level field of Stripe's own examples (stripe-fixtures/objects.json)."""

from __future__ import annotations

import pytest

from crmhub.sandbox import World

# Field names copied from objects.json, so the test runs without the reference checkout.
FIELDS = {
    "customers": (  # noqa: SIM905
        "address balance created currency default_source delinquent description discount email id "
        "invoice_prefix invoice_settings livemode metadata name next_invoice_sequence object phone "
        "preferred_locales shipping tax_exempt test_clock"
    ).split(),
    "subscriptions": (  # noqa: SIM905
        "application application_fee_percent automatic_tax billing_cycle_anchor "
        "billing_cycle_anchor_config billing_mode billing_schedules billing_thresholds cancel_at "
        "cancel_at_period_end canceled_at cancellation_details collection_method created currency "
        "customer customer_account days_until_due default_payment_method default_source default_tax_rates "
        "description discounts ended_at id invoice_settings items latest_invoice livemode "
        "managed_payments metadata next_pending_invoice_item_invoice object on_behalf_of pause_collection "
        "payment_settings pending_invoice_item_interval pending_setup_intent pending_update schedule "
        "start_date status test_clock transfer_data trial_end trial_settings trial_start"
    ).split(),
    "invoices": (  # noqa: SIM905
        "account_country account_name account_tax_ids amount_due amount_overpaid amount_paid "
        "amount_remaining amount_shipping application attempt_count attempted auto_advance automatic_tax "
        "automatically_finalizes_at billing_reason collection_method created currency custom_fields "
        "customer customer_account customer_address customer_email customer_name customer_phone "
        "customer_shipping customer_tax_exempt customer_tax_ids default_payment_method default_source "
        "default_tax_rates description discounts due_date effective_at ending_balance footer from_invoice "
        "hosted_invoice_url id invoice_pdf issuer last_finalization_error latest_revision lines livemode "
        "metadata next_payment_attempt number object on_behalf_of parent payment_settings period_end "
        "period_start post_payment_credit_notes_amount pre_payment_credit_notes_amount receipt_number "
        "rendering shipping_cost shipping_details starting_balance statement_descriptor status "
        "status_transitions subscription subtotal subtotal_excluding_tax test_clock total "
        "total_discount_amounts total_excluding_tax total_pretax_credit_amounts total_taxes "
        "webhooks_delivered_at"
    ).split(),
    "charges": (  # noqa: SIM905
        "amount amount_captured amount_refunded application application_fee application_fee_amount "
        "balance_transaction billing_details calculated_statement_descriptor captured created currency "
        "customer description disputed failure_balance_transaction failure_code failure_message "
        "fraud_details id livemode metadata object on_behalf_of outcome paid payment_intent "
        "payment_method payment_method_details receipt_email receipt_number receipt_url refunded refunds "
        "review shipping source source_transfer statement_descriptor statement_descriptor_suffix status "
        "transfer_data transfer_group"
    ).split(),
    "products": (  # noqa: SIM905
        "active created default_price description id images livemode marketing_features metadata name "
        "object package_dimensions shippable statement_descriptor tax_code type unit_label updated url"
    ).split(),
    "prices": (  # noqa: SIM905
        "active billing_scheme created currency custom_unit_amount id livemode lookup_key metadata "
        "nickname object product recurring tax_behavior tiers_mode transform_quantity type unit_amount "
        "unit_amount_decimal"
    ).split(),
    "events": (  # noqa: SIM905
        "api_version created data id livemode object pending_webhooks request type"
    ).split(),
    "subscription_items": (  # noqa: SIM905
        "billing_thresholds created current_period_end current_period_start discounts id metadata object "
        "plan price quantity subscription tax_rates"
    ).split(),
}


@pytest.fixture(scope="module")
def world() -> World:
    """A small world with a few days of changes, so events of several kinds exist."""
    made = World(60, seed=12)
    made.tick(2)
    return made


@pytest.mark.parametrize("kind", [k for k in FIELDS if k != "subscription_items"])
def test_every_object_has_the_fields_of_stripes_example(world: World, kind: str) -> None:
    for obj in world.stripe[kind].items:
        missing = set(FIELDS[kind]) - set(obj.data)
        assert not missing, f"{obj.data['id']} lacks {sorted(missing)}"


def test_subscription_items_have_the_fields_of_stripes_example(world: World) -> None:
    for sub in world.stripe["subscriptions"].items:
        for item in sub.data["items"]["data"]:
            assert set(FIELDS["subscription_items"]) <= set(item)
            assert item["plan"]["id"] == item["price"]["id"]
