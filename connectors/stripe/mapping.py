"""Stripe objects and events into Records and ContactEvents."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.base import from_epoch
from connectors.exceptions import MalformedPageError
from connectors.records import ContactEvent, Record

__all__ = [
    "DELETING_EVENTS",
    "PREVIEW_EVENTS",
    "event_record",
    "identities",
    "is_preview",
    "object_record",
    "paid_invoice_event",
    "stripe_event",
    "validate_event",
]

# Only these mean the object is gone; `customer.subscription.deleted` is a cancellation (status canceled).
DELETING_EVENTS = frozenset({"customer.deleted", "invoice.deleted"})
# These carry a preview of an object that does not exist yet: `invoice.upcoming`'s invoice has no id
# (or, at some API versions, an `upcoming_in_...` id that names nothing), so it is never a Record.
PREVIEW_EVENTS = frozenset({"invoice.upcoming"})

# Copied into ContactEvent.properties when present, so segment rules need not dig in payloads.
_EVENT_PROPERTIES = ("amount", "amount_paid", "amount_due", "currency", "status", "total")
_PAID = "invoice.paid"
# Event times are whole seconds, and Stripe delivers webhooks in no particular order: a
# `customer.created` arriving after the `customer.updated` of the same second would replace the
# newer state (a store keeps the later arrival of equal times). Within its second, a record is
# dated by where its event stands in the object's life: created, then changed, then deleted.
_LIFECYCLE_STEP = timedelta(microseconds=1)


def _customer_id(obj: Mapping[str, Any]) -> str | None:
    if obj.get("object") == "customer":
        return str(obj["id"])
    customer = obj.get("customer")
    if isinstance(customer, Mapping):
        customer = customer.get("id")
    return customer if isinstance(customer, str) and customer else None


def _email(obj: Mapping[str, Any]) -> str | None:
    details = obj.get("billing_details")
    candidates = [
        obj.get("email") if obj.get("object") == "customer" else None,
        obj.get("customer_email"),
        obj.get("receipt_email"),
        details.get("email") if isinstance(details, Mapping) else None,
    ]
    customer = obj.get("customer")
    if isinstance(customer, Mapping):
        candidates.append(customer.get("email"))
    return next((c for c in candidates if isinstance(c, str) and c), None)


def identities(obj: Mapping[str, Any]) -> dict[str, str]:
    """Who an object is about: `stripe_customer` and, when the object carries one, `email`."""
    found: dict[str, str] = {}
    customer = _customer_id(obj)
    if customer:
        found["stripe_customer"] = customer
    email = _email(obj)
    if email:
        found["email"] = email
    return found


def object_record(stream: str, obj: Mapping[str, Any], *, seen_at: datetime) -> Record:
    """A listed object as a Record; lists carry no update time, so `seen_at` stands in for it.

    `seen_at` must be in Stripe's time (the backfill's T0): events carry Stripe's `created`, and a
    stored copy only yields to a newer one, so a local clock ahead of Stripe's would make every
    later update look older than the listed copy.
    """
    return Record(
        source="stripe",
        stream=stream,
        external_id=str(obj["id"]),
        updated_at=seen_at,
        payload=obj,
        deleted=bool(obj.get("deleted")),
    )


def is_preview(event: Mapping[str, Any]) -> bool:
    """Whether the event's object is a preview (PREVIEW_EVENTS): no object of its id exists."""
    return event["type"] in PREVIEW_EVENTS


def validate_event(event: Any, *, previews: bool = False) -> Mapping[str, Any]:
    """An event with the keys we rely on, or a MalformedPageError; `previews` admits id-less previews.

    A caller passing `previews=True` must make no Record of a preview (see `is_preview`).
    """
    data = event.get("data") if isinstance(event, Mapping) else None
    obj = data.get("object") if isinstance(data, Mapping) else None
    if (
        not isinstance(event, Mapping)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("created"), int)
        or not isinstance(event.get("type"), str)
        or not isinstance(obj, Mapping)
        or not (isinstance(obj.get("id"), str) or (previews and is_preview(event)))
    ):
        raise MalformedPageError(
            "stripe: /v1/events: malformed page: an event lacks id, created, type or data.object.id: "
            "check connectors.stripe.base_url points at the Stripe API"
        )
    return event


def event_record(stream: str, event: Mapping[str, Any]) -> Record:
    """The object an event carries, as the Record of its state at the event's time."""
    obj = event["data"]["object"]
    deleted = event["type"] in DELETING_EVENTS or bool(obj.get("deleted"))
    return Record(
        source="stripe",
        stream=stream,
        external_id=str(obj["id"]),
        updated_at=from_epoch(event["created"]) + _LIFECYCLE_STEP * _lifecycle_rank(event["type"], deleted),
        payload=obj,
        deleted=deleted,
    )


def _lifecycle_rank(event_type: str, deleted: bool) -> int:
    """0 for a creation, 2 for a deletion, 1 for anything between: the order within one second."""
    if deleted:
        return 2
    return 0 if event_type.endswith(".created") else 1


def stripe_event(event: Mapping[str, Any]) -> ContactEvent | None:
    """The event as something a person did (`invoice.paid`, ...); None when it names no one."""
    obj = event["data"]["object"]
    # An invoice is paid once: keyed by the invoice, the payment is one event however it was
    # learnt (the invoice list, the event history, a webhook).
    key = obj["id"] if event["type"] == _PAID else event["id"]
    # A preview's id, when it has one, names no stored object: a rule must not join on it.
    object_id = None if is_preview(event) else str(obj["id"])
    return _contact_event(obj, str(event["type"]), str(key), event["created"], object_id)


def paid_invoice_event(invoice: Mapping[str, Any]) -> ContactEvent | None:
    """A listed paid invoice as its `invoice.paid` at `status_transitions.paid_at`; None if unpaid.

    Stripe keeps events for 30 days; the invoice list goes back to the first invoice, so payments
    older than the event history still count for "no payment in a year" and lead scores.
    """
    transitions = invoice.get("status_transitions")
    paid_at = transitions.get("paid_at") if isinstance(transitions, Mapping) else None
    if invoice.get("status") != "paid" or not isinstance(paid_at, int):
        return None
    return _contact_event(invoice, _PAID, str(invoice["id"]), paid_at, str(invoice["id"]))


def _contact_event(
    obj: Mapping[str, Any], name: str, key: str, created: int, object_id: str | None
) -> ContactEvent | None:
    who = identities(obj)
    if not who:
        return None
    properties: dict[str, Any] = {"object": obj.get("object")}
    if object_id is not None:
        properties["object_id"] = object_id
    properties.update({k: obj[k] for k in _EVENT_PROPERTIES if obj.get(k) is not None})
    return ContactEvent(
        source="stripe",
        name=name,
        external_id=key,
        occurred_at=from_epoch(created),
        identities=who,
        properties=properties,
    )
