"""Stripe objects in the shapes of Stripe's own examples, kept newest-first with pre-serialized bytes."""

from __future__ import annotations

import bisect
import json
import random
from typing import Any

from crmhub.sandbox.people import Person, random_id

API_VERSION = "2026-10-28.endive"
EVENT_RETENTION_SECONDS = 30 * 86400
KINDS = ("customers", "subscriptions", "invoices", "charges", "events", "products", "prices")

JSON = dict[str, Any]


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, the one serializer the sandbox uses."""
    return json.dumps(value, separators=(",", ":")).encode()


class StripeObject:
    """A stored object: its dict, its sort key and its cached JSON bytes."""

    __slots__ = ("_raw", "data", "key")

    def __init__(self, data: JSON, seq: int) -> None:
        self.data = data
        self.key = (int(data["created"]), seq)
        self._raw: bytes | None = None

    @property
    def raw(self) -> bytes:
        """The object as JSON bytes, serialized once until it changes."""
        if self._raw is None:
            self._raw = dumps(self.data)
        return self._raw

    def touch(self) -> None:
        """Forget the cached bytes after a change."""
        self._raw = None


class Collection:
    """One kind of object, ascending by `(created, seq)`; lists read it backwards (newest first)."""

    def __init__(self) -> None:
        self.items: list[StripeObject] = []
        self.keys: list[tuple[int, int]] = []
        self.by_id: dict[str, StripeObject] = {}
        # Bumped on every insert and removal, so filtered copies of the list know when they are stale.
        self.version = 0

    def add(self, obj: StripeObject) -> None:
        """Insert keeping the order; new objects are usually the newest so this is an append."""
        self.version += 1
        at = bisect.bisect(self.keys, obj.key)
        self.items.insert(at, obj)
        self.keys.insert(at, obj.key)
        self.by_id[obj.data["id"]] = obj

    def remove(self, object_id: str) -> StripeObject | None:
        """Take an object out of the list (deleted customers are no longer listed)."""
        obj = self.by_id.pop(object_id, None)
        if obj is not None:
            self.version += 1
            at = bisect.bisect_left(self.keys, obj.key)
            del self.items[at]
            del self.keys[at]
        return obj

    def __len__(self) -> int:
        return len(self.items)


class StripeStore:
    """Every Stripe collection plus builders that keep ids, links and events consistent."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"stripe:{seed}")
        self.collections = {kind: Collection() for kind in KINDS}
        self.deleted_customers: dict[str, JSON] = {}
        self._seq = 0

    def __getitem__(self, kind: str) -> Collection:
        return self.collections[kind]

    def get(self, object_id: str) -> StripeObject | None:
        """Any object by id, whatever its kind."""
        for collection in self.collections.values():
            found = collection.by_id.get(object_id)
            if found is not None:
                return found
        return None

    def add(self, kind: str, data: JSON) -> StripeObject:
        """Store a new object of `kind`."""
        self._seq += 1
        obj = StripeObject(data, self._seq)
        self.collections[kind].add(obj)
        return obj

    def serialize_all(self) -> None:
        """Serialize every object now, so the first page served costs no more than the next."""
        for collection in self.collections.values():
            for obj in collection.items:
                _ = obj.raw

    def counts(self) -> dict[str, int]:
        """Number of stored objects of every kind (events include expired ones)."""
        return {kind: len(c) for kind, c in self.collections.items()} | {
            "deleted_customers": len(self.deleted_customers)
        }

    # -- builders -----------------------------------------------------------------------------------

    def new_product(self, name: str, created: int) -> StripeObject:
        """A product such as `Pro`."""
        return self.add(
            "products",
            {
                "id": random_id(self.rng, "prod_"),
                "object": "product",
                "active": True,
                "created": created,
                "default_price": None,
                "description": f"crmhub sandbox {name} plan",
                "images": [],
                "livemode": False,
                "marketing_features": [],
                "metadata": {},
                "name": name,
                "package_dimensions": None,
                "shippable": None,
                "statement_descriptor": None,
                "tax_code": None,
                "type": "service",
                "unit_label": None,
                "updated": created,
                "url": None,
            },
        )

    def new_price(self, product: StripeObject, unit_amount: int, lookup_key: str) -> StripeObject:
        """A monthly recurring price of `product`."""
        price = self.add(
            "prices",
            {
                "id": random_id(self.rng, "price_", 24),
                "object": "price",
                "active": True,
                "billing_scheme": "per_unit",
                "created": product.data["created"],
                "currency": "usd",
                "custom_unit_amount": None,
                "livemode": False,
                "lookup_key": lookup_key,
                "metadata": {},
                "nickname": product.data["name"],
                "product": product.data["id"],
                "recurring": {
                    "interval": "month",
                    "interval_count": 1,
                    "meter": None,
                    "trial_period_days": None,
                    "usage_type": "licensed",
                },
                "tax_behavior": "unspecified",
                "tiers_mode": None,
                "transform_quantity": None,
                "type": "recurring",
                "unit_amount": unit_amount,
                "unit_amount_decimal": str(unit_amount),
            },
        )
        product.data["default_price"] = price.data["id"]
        product.touch()
        return price

    def new_customer(self, person: Person, created: int) -> StripeObject:
        """A customer for `person`, with the e-mail and phone as Stripe holds them."""
        address = {"city": None, "country": "US", "line1": None, "line2": None, "postal_code": None}
        return self.add(
            "customers",
            {
                "id": random_id(self.rng, "cus_"),
                "object": "customer",
                "address": address | {"state": None},
                "balance": 0,
                "created": created,
                "currency": "usd",
                "default_source": None,
                "delinquent": False,
                "description": None,
                "discount": None,
                "email": person.variants.get("stripe.email", person.email),
                "invoice_prefix": random_id(self.rng, "", 8).upper(),
                "invoice_settings": {
                    "custom_fields": None,
                    "default_payment_method": None,
                    "footer": None,
                    "rendering_options": None,
                },
                "livemode": False,
                "metadata": {"user_id": person.user_id},
                "name": f"{person.first} {person.last}",
                "next_invoice_sequence": 1,
                "phone": person.variants.get("stripe.phone"),
                "preferred_locales": [],
                "shipping": None,
                "tax_exempt": "none",
                "test_clock": None,
            },
        )

    def new_subscription(
        self, customer: StripeObject, price: StripeObject, status: str, created: int, now: int
    ) -> StripeObject:
        """A one-item subscription of `customer` to `price` in `status`."""
        sub_id = random_id(self.rng, "sub_")
        period_start = max(created, now - (now - created) % (30 * 86400))
        trialing = status == "trialing"
        ended = status in ("canceled", "incomplete_expired")
        item: JSON = {
            "id": random_id(self.rng, "si_"),
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": created,
            "current_period_end": period_start + 30 * 86400,
            "current_period_start": period_start,
            "discounts": [],
            "metadata": {},
            "plan": plan_of(price.data),
            "price": dict(price.data),
            "quantity": 1,
            "subscription": sub_id,
            "tax_rates": [],
        }
        return self.add(
            "subscriptions",
            {
                "id": sub_id,
                "object": "subscription",
                "application": None,
                "billing_cycle_anchor": created,
                "cancel_at": None,
                "cancel_at_period_end": False,
                "canceled_at": now - 86400 if ended else None,
                "cancellation_details": {"comment": None, "feedback": None, "reason": None},
                "collection_method": "charge_automatically",
                "created": created,
                "currency": "usd",
                "customer": customer.data["id"],
                "days_until_due": None,
                "default_payment_method": None,
                "description": None,
                "discounts": [],
                "ended_at": now - 86400 if ended else None,
                "items": {
                    "object": "list",
                    "data": [item],
                    "has_more": False,
                    "url": f"/v1/subscription_items?subscription={sub_id}",
                },
                "latest_invoice": None,
                "livemode": False,
                "metadata": {},
                "pause_collection": {"behavior": "mark_uncollectible", "resumes_at": None}
                if status == "paused"
                else None,
                "start_date": created,
                "status": status,
                "test_clock": None,
                "trial_end": created + 14 * 86400 if trialing else None,
                "trial_start": created if trialing else None,
                "application_fee_percent": None,
                "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
                "billing_cycle_anchor_config": None,
                "billing_mode": {"flexible": None, "type": "classic"},
                "billing_schedules": [],
                "billing_thresholds": None,
                "customer_account": None,
                "default_source": None,
                "default_tax_rates": [],
                "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
                "managed_payments": {"enabled": False},
                "next_pending_invoice_item_invoice": None,
                "on_behalf_of": None,
                "payment_settings": {
                    "payment_method_options": None,
                    "payment_method_types": None,
                    "save_default_payment_method": "off",
                },
                "pending_invoice_item_interval": None,
                "pending_setup_intent": None,
                "pending_update": None,
                "schedule": None,
                "transfer_data": None,
                "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            },
        )

    def new_invoice(self, subscription: StripeObject, created: int, paid: bool) -> StripeObject:
        """An invoice for one period of `subscription`, paid or still open."""
        invoice_id = random_id(self.rng, "in_", 24)
        return self.add("invoices", self._invoice(subscription, created, paid, invoice_id))

    def upcoming_invoice(self, subscription: StripeObject, due: int) -> JSON:
        """The preview an `invoice.upcoming` carries of the invoice `subscription` makes at `due`; not stored.

        As on Stripe, it has no id (the invoice does not exist yet) and no list shows it.
        """
        preview = self._invoice(subscription, due, False, "upcoming")
        del preview["id"]
        preview["lines"]["data"][0]["invoice"] = None
        preview["lines"]["url"] = "/v1/invoices/upcoming/lines"
        never = dict.fromkeys(preview["status_transitions"])
        return preview | {
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": False,
            "billing_reason": "upcoming",
            "effective_at": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "next_payment_attempt": due,
            "number": None,
            "status": "draft",
            "status_transitions": never,
            "webhooks_delivered_at": None,
        }

    def _invoice(self, subscription: StripeObject, created: int, paid: bool, invoice_id: str) -> JSON:
        """The invoice `invoice_id` of `subscription` for the period ending at `created`."""
        sub = subscription.data
        price = sub["items"]["data"][0]["price"]
        amount = int(price["unit_amount"])
        customer = self.collections["customers"].by_id.get(sub["customer"])
        email = customer.data["email"] if customer else None
        name = customer.data["name"] if customer else None
        phone = customer.data["phone"] if customer else None
        line = {
            "id": random_id(self.rng, "il_", 24),
            "object": "line_item",
            "amount": amount,
            "currency": "usd",
            "description": f"1 x {price['nickname']} (at ${amount / 100:.2f} / month)",
            "invoice": invoice_id,
            "livemode": False,
            "metadata": {},
            "period": {"start": created, "end": created + 30 * 86400},
            "pricing": {"type": "price_details", "price_details": {"price": price["id"]}},
            "quantity": 1,
            "subtotal": amount,
        }
        return {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "amount_due": amount,
            "amount_paid": amount if paid else 0,
            "amount_remaining": 0 if paid else amount,
            "attempt_count": 1,
            "attempted": True,
            "billing_reason": "subscription_cycle",
            "collection_method": "charge_automatically",
            "created": created,
            "currency": "usd",
            "customer": sub["customer"],
            "customer_email": email,
            "lines": {
                "object": "list",
                "data": [line],
                "has_more": False,
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "number": f"{random_id(self.rng, '', 8).upper()}-0001",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"metadata": {}, "subscription": sub["id"]},
            },
            "period_end": created,
            "period_start": created - 30 * 86400,
            "status": "paid" if paid else "open",
            "status_transitions": {
                "finalized_at": created,
                "marked_uncollectible_at": None,
                "paid_at": created + 60 if paid else None,
                "voided_at": None,
            },
            "subscription": sub["id"],
            "subtotal": amount,
            "total": amount,
            "account_name": "crmhub sandbox",
            "account_tax_ids": None,
            "amount_overpaid": 0,
            "amount_shipping": 0,
            "application": None,
            "auto_advance": not paid,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": None,
            "custom_fields": None,
            "customer_account": None,
            "customer_address": None,
            "customer_name": name,
            "customer_phone": phone,
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "due_date": None,
            "effective_at": created,
            "ending_balance": 0,
            "footer": None,
            "from_invoice": None,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/sandbox/{invoice_id}",
            "invoice_pdf": f"https://pay.stripe.com/invoice/sandbox/{invoice_id}/pdf",
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "next_payment_attempt": None if paid else created + 3 * 86400,
            "on_behalf_of": None,
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "subtotal_excluding_tax": amount,
            "test_clock": None,
            "total_discount_amounts": [],
            "total_excluding_tax": amount,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": created,
        }

    def new_charge(self, invoice: StripeObject, succeeded: bool) -> StripeObject:
        """The card charge that paid (or failed to pay) `invoice`."""
        inv = invoice.data
        charge_id = random_id(self.rng, "ch_", 24)
        return self.add(
            "charges",
            {
                "id": charge_id,
                "object": "charge",
                "amount": inv["amount_due"],
                "amount_captured": inv["amount_due"] if succeeded else 0,
                "amount_refunded": 0,
                "balance_transaction": random_id(self.rng, "txn_", 24) if succeeded else None,
                "billing_details": {"email": inv["customer_email"], "name": None, "phone": None},
                "captured": succeeded,
                "created": inv["created"] + 60,
                "currency": "usd",
                "customer": inv["customer"],
                "description": "Subscription update",
                "disputed": False,
                "failure_code": None if succeeded else "card_declined",
                "failure_message": None if succeeded else "Your card was declined.",
                "livemode": False,
                "metadata": {"invoice": inv["id"]},
                "outcome": {
                    "network_status": "approved_by_network" if succeeded else "declined_by_network",
                    "reason": None if succeeded else "generic_decline",
                    "seller_message": "Payment complete."
                    if succeeded
                    else "The bank did not return any further details.",
                    "type": "authorized" if succeeded else "issuer_declined",
                },
                "paid": succeeded,
                "payment_method_details": {
                    "card": {"brand": "visa", "last4": "4242", "exp_year": 2030},
                    "type": "card",
                },
                "receipt_email": inv["customer_email"],
                "refunded": False,
                "status": "succeeded" if succeeded else "failed",
                "application": None,
                "application_fee": None,
                "application_fee_amount": None,
                "calculated_statement_descriptor": "CRMHUB SANDBOX",
                "failure_balance_transaction": None,
                "fraud_details": {},
                "on_behalf_of": None,
                "payment_intent": random_id(self.rng, "pi_", 24),
                "payment_method": random_id(self.rng, "pm_", 24),
                "receipt_number": None,
                "receipt_url": f"https://pay.stripe.com/receipts/sandbox/{charge_id}" if succeeded else None,
                "refunds": {
                    "object": "list",
                    "data": [],
                    "has_more": False,
                    "url": f"/v1/charges/{charge_id}/refunds",
                },
                "review": None,
                "shipping": None,
                "source": None,
                "source_transfer": None,
                "statement_descriptor": None,
                "statement_descriptor_suffix": None,
                "transfer_data": None,
                "transfer_group": None,
            },
        )

    def new_event(
        self, event_type: str, obj: JSON, created: int, previous: JSON | None = None
    ) -> StripeObject:
        """An event carrying a snapshot of `obj` as it is now."""
        data: JSON = {"object": json.loads(dumps(obj))}
        if previous is not None:
            data["previous_attributes"] = previous
        return self.add(
            "events",
            {
                "id": random_id(self.rng, "evt_", 24),
                "object": "event",
                "api_version": API_VERSION,
                "created": created,
                "data": data,
                "livemode": False,
                "pending_webhooks": 0,
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
            },
        )

    def delete_customer(self, customer_id: str) -> JSON | None:
        """Delete a customer; Stripe then answers for it with the deleted stub."""
        obj = self.collections["customers"].remove(customer_id)
        if obj is None:
            return None
        stub = {"id": customer_id, "object": "customer", "deleted": True}
        self.deleted_customers[customer_id] = stub
        return stub

    # -- expansion ----------------------------------------------------------------------------------

    def expand(self, item: JSON, path: list[str]) -> None:
        """Replace the id at dotted `path` inside `item` (a private copy) with the object it names."""
        if not path:
            return
        head, rest = path[0], path[1:]
        value = item.get(head)
        if isinstance(value, str):
            target = self.get(value)
            if target is None and value in self.deleted_customers:
                item[head] = dict(self.deleted_customers[value])
                return
            if target is None:
                return
            value = item[head] = json.loads(target.raw)
        if not isinstance(value, dict):
            return
        if value.get("object") == "list" and rest[:1] == ["data"]:
            for child in value["data"]:
                self.expand(child, rest[1:])
        else:
            self.expand(value, rest)


def plan_of(price: JSON) -> JSON:
    """The legacy `plan` a subscription item still carries next to its recurring `price`."""
    recurring = price["recurring"]
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring["interval"],
        "interval_count": recurring["interval_count"],
        "livemode": False,
        "metadata": {},
        "meter": None,
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": recurring["usage_type"],
    }
