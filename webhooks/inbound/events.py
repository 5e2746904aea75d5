"""Verified provider payloads as connector Batches (parsed by the connectors' code) and their event ids."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors import Batch, InvalidMessageError, MalformedPageError, Record
from connectors.base import parse_time
from connectors.segmentio import parse_messages
from connectors.stripe.mapping import event_record, is_preview, stripe_event, validate_event
from connectors.stripe.streams import KINDS
from connectors.typeform.mapping import response_event, response_record
from webhooks.inbound.request import InboundError

__all__ = [
    "HubSpotFetch",
    "Parsed",
    "hubspot_batch",
    "hubspot_events",
    "load_json",
    "message_ids",
    "segmentio_batch",
    "stripe_batch",
    "typeform_batch",
]

# Reads contacts by HubSpot id, as the contacts stream pulls them (`HubSpotSource.read_contacts`).
HubSpotFetch = Callable[[Sequence[str]], Sequence[Record]]

_STREAM_OF_OBJECT = {kind.object: kind.name for kind in KINDS.values()}
_HUBSPOT_DELETIONS = frozenset({"contact.deletion", "contact.privacyDeletion"})
# Typeform's webhook adds these to a response; the Responses API, which the pull stores, has neither.
_TYPEFORM_EXTRAS = ("definition", "ending")
# Far deeper than any provider's payload; a hostile body nested thousands deep is refused as malformed.
MAX_JSON_DEPTH = 64


@dataclass(frozen=True)
class Parsed:
    """What a delivery holds: the Batch to ingest (None: nothing crmhub uses) and the event ids to claim."""

    batch: Batch | None
    event_ids: list[str]
    ignored: list[str] = field(default_factory=list)
    # HubSpot only: the contact events whose contacts are still to be read.
    pending: list[Mapping[str, Any]] = field(default_factory=list)


def _malformed(provider: str, cause: str, fix: str) -> InboundError:
    return InboundError(400, "malformed_payload", f"{provider}: {cause}: {fix}")


def load_json(provider: str, body: bytes) -> Any:
    """The body as JSON, or a 400 saying it is not (truncated, not UTF-8, not JSON, nested too deep)."""
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise _malformed(
            provider, f"the body is not valid JSON ({exc})", "send the payload unchanged"
        ) from None
    except RecursionError:
        raise _too_deep(provider) from None
    # Refused here, not later: storing and mapping walk the value recursively too.
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise _too_deep(provider)
    return value


def _too_deep(provider: str) -> InboundError:
    return _malformed(
        provider, f"the JSON nests deeper than {MAX_JSON_DEPTH} levels", "send the payload unchanged"
    )


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects in `value` nest more than `limit` levels (walked without recursion)."""
    level: list[Any] = [value]
    for _depth in range(limit):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return False
    return any(isinstance(node, dict | list) for node in level)


def stripe_batch(body: Any) -> Parsed:
    """A Stripe event: the object's Record (for the four pulled kinds) and the person's ContactEvent."""
    try:
        event = validate_event(body, previews=True)
    except MalformedPageError:
        raise _malformed(
            "stripe", "an event needs id, created, type and data.object.id", "send a Stripe event"
        ) from None
    stream = _STREAM_OF_OBJECT.get(str(event["data"]["object"].get("object")))
    # A preview (invoice.upcoming) has no object yet to store: its person's contact event only.
    records = [event_record(stream, event)] if stream and not is_preview(event) else []
    contact_event = stripe_event(event)
    events = [contact_event] if contact_event else []
    if not records and not events:
        return Parsed(None, [], [f"{event['type']} names no customer and no pulled object"])
    batch = Batch("stripe", stream or "events", records=records, events=events, requests=0)
    return Parsed(batch, [str(event["id"])])


def typeform_batch(body: Any) -> Parsed:
    """A `form_response` webhook: the same Record and `form.submitted` event as a pulled response."""
    if not isinstance(body, Mapping) or not isinstance(body.get("form_response"), Mapping):
        raise _malformed("typeform", "'form_response' is missing", "send a Typeform webhook payload")
    if body.get("event_type", "form_response") != "form_response":
        return Parsed(None, [], [f"event_type {body.get('event_type')!r} is not a form response"])
    item = {k: v for k, v in body["form_response"].items() if k not in _TYPEFORM_EXTRAS}
    submitted = parse_time(item.get("submitted_at"))
    form_id = item.get("form_id")
    if submitted is None or not isinstance(item.get("token"), str) or not isinstance(form_id, str):
        raise _malformed(
            "typeform",
            "form_response needs form_id, token and submitted_at",
            "send a Typeform webhook payload",
        )
    event = response_event(form_id, item, submitted)
    batch = Batch(
        "typeform",
        "responses",
        records=[response_record(form_id, item, submitted)],
        events=[event] if event else [],
        requests=0,
    )
    return Parsed(batch, [str(body.get("event_id") or item["token"])])


def _hubspot_id(event: Mapping[str, Any]) -> str:
    # HubSpot does not promise eventId is unique on its own; with the portal and subscription it is.
    return f"{event.get('portalId')}:{event.get('subscriptionId')}:{event['eventId']}"


def hubspot_events(body: Any) -> Parsed:
    """The contact events of a HubSpot delivery, validated, with their ids; the Batch is built later."""
    if not isinstance(body, list) or not all(
        isinstance(e, Mapping)
        and "eventId" in e
        and "objectId" in e
        and isinstance(e.get("subscriptionType"), str)
        for e in body
    ):
        raise _malformed(
            "hubspot",
            "expected a JSON array of events with eventId, objectId and subscriptionType",
            "send HubSpot's webhook payload unchanged",
        )
    contact = [e for e in body if e["subscriptionType"].startswith("contact.")]
    ignored = sorted({e["subscriptionType"] for e in body if e not in contact})
    return Parsed(None, sorted({_hubspot_id(e) for e in contact}), ignored, contact)


def hubspot_batch(events: Sequence[Mapping[str, Any]], fetch: HubSpotFetch) -> Batch:
    """Contact events (they carry ids only) as the contacts' current Records, read through the API."""
    deleted = {str(e["objectId"]): e for e in events if e["subscriptionType"] in _HUBSPOT_DELETIONS}
    # One read per contact however many of its properties changed: a batch upserts a key once.
    changed = list(dict.fromkeys(str(e["objectId"]) for e in events if str(e["objectId"]) not in deleted))
    records = list(fetch(changed)) if changed else []
    records += [
        Record(
            "hubspot",
            "contacts",
            object_id,
            datetime.fromtimestamp(int(e.get("occurredAt") or 0) / 1000, tz=UTC),
            {"id": object_id, "archived": True},
            deleted=True,
        )
        for object_id, e in deleted.items()
    ]
    return Batch("hubspot", "contacts", records=records, requests=0)


def message_ids(batch: Batch) -> list[str]:
    """The Segment.com messageIds a parsed batch carries (given, or derived by the connector)."""
    ids = [str(r.payload.get("messageId")) for r in batch.records] + [e.external_id for e in batch.events]
    return sorted(set(ids))


def segmentio_batch(body: Any, *, received_at: datetime) -> Parsed:
    """One Segment.com message from the Webhooks destination; types crmhub does not store are ignored."""
    if isinstance(body, list):
        raise _malformed(
            "segmentio", "a batch (JSON array) arrived", "turn batching off on the Webhooks destination"
        )
    if isinstance(body, Mapping) and body.get("type") in ("screen", "alias", "delete"):
        return Parsed(None, [], [f"type {body['type']!r} is not stored by crmhub"])
    try:
        batch = parse_messages([body], received_at=received_at)
    except InvalidMessageError as exc:
        raise InboundError(400, "invalid_message", str(exc)) from None
    return Parsed(batch, message_ids(batch))
