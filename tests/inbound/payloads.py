"""Provider payloads for the inbound tests, shaped as the providers (and the sandbox) send them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.inbound.conftest import NOW

FIXTURES = Path("/work/shared/reference/stripe-fixtures/objects.json")


def _stripe_object(kind: str) -> dict[str, Any]:
    if FIXTURES.exists():
        obj: dict[str, Any] = json.loads(FIXTURES.read_text(encoding="utf-8"))[kind]
        return obj
    # The reference copy is optional; these are the fields the connector reads.
    return {"id": "in_1Pgc6tB7WZ01zgkWu9fdqL6I", "object": kind, "customer": "cus_QXg1o8vcGmoR32"}


def stripe_event(event_id: str = "evt_1", *, at: datetime = NOW) -> dict[str, Any]:
    """`invoice.paid` for a customer with an e-mail, built on Stripe's own invoice example."""
    invoice = _stripe_object("invoice") | {
        "status": "paid",
        "amount_paid": 2000,
        "customer_email": "ada@example.com",
    }
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(at.timestamp()),
        "data": {"object": invoice},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "invoice.paid",
    }


def hubspot_events(*object_ids: int, first_event: int = 100) -> list[dict[str, Any]]:
    """`contact.propertyChange` events (lifecyclestage), one per contact, as HubSpot batches them."""
    return [
        {
            "eventId": first_event + n,
            "subscriptionId": 1002,
            "portalId": 62515,
            "appId": 4242,
            "occurredAt": int(NOW.timestamp() * 1000),
            "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0,
            "objectId": object_id,
            "propertyName": "lifecyclestage",
            "propertyValue": "customer",
            "changeSource": "CRM",
        }
        for n, object_id in enumerate(object_ids)
    ]


def typeform_payload(token: str = "tok_1", *, at: datetime = NOW) -> dict[str, Any]:
    """A `form_response` webhook, as in Typeform's example payload."""
    submitted = (at - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "event_id": f"01J{token.upper()}",
        "event_type": "form_response",
        "form_response": {
            "form_id": "crmhubNPS",
            "token": token,
            "landed_at": submitted,
            "submitted_at": submitted,
            "hidden": {"user_id": "u_42"},
            "calculated": {"score": 0},
            "definition": {
                "id": "crmhubNPS",
                "title": "NPS",
                "fields": [
                    {"id": "f1", "ref": "nps", "type": "opinion_scale", "title": "How likely...?"},
                    {"id": "f2", "ref": "email", "type": "email", "title": "Your e-mail"},
                ],
            },
            "answers": [
                {"type": "number", "number": 4, "field": {"id": "f1", "type": "opinion_scale", "ref": "nps"}},
                {
                    "type": "email",
                    "email": "grace@example.com",
                    "field": {"id": "f2", "type": "email", "ref": "email"},
                },
            ],
            "ending": {"id": "default_tys", "ref": "default_tys"},
        },
    }


def segment_track(message_id: str = "msg-1") -> dict[str, Any]:
    """One `track` message as the Segment.com Webhooks destination posts it."""
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u_7",
        "messageId": message_id,
        "timestamp": NOW.isoformat(),
        "properties": {"revenue": 9.5},
        "context": {"traits": {"email": "linus@example.com"}},
    }
