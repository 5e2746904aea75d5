"""Segment.com messages pushed to us (Segment Spec): validated into Records and ContactEvents.

`identify` -> a Record in stream `users` (traits); `group` -> a Record in stream `groups`;
`track` -> a ContactEvent named after `event`; `page` -> a ContactEvent `Page Viewed` and `screen`
-> `Screen Viewed` (with `name`, `category` and the properties); `alias` -> a ContactEvent `User
Aliased` of the new `userId`, with `previousId` among its properties only: it links no contacts,
as `previousId` may be an earlier userId or an anonymousId and the two are different identity
kinds. A `batch` body applies its `context` and `integrations` to each message, and leaves out
the messages that cannot be used (each with why) rather than refuse the others: Segment.com's
libraries do not retry a 400. Push sources have no cursor: the result is one Batch with
`cursor=None` and `requests=0`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.base import parse_time
from connectors.exceptions import InvalidMessageError
from connectors.records import Batch, ContactEvent, Record

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "SUPPORTED_TYPES",
    "ParsedBatch",
    "check_size",
    "parse_batch",
    "parse_message",
    "parse_messages",
]

# Segment's HTTP Tracking API limits; a larger body is answered with 400 there, so here too.
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
# The longest ids, event names and identity values the store's columns keep (PostgreSQL refuses more).
MAX_ID_CHARS = 255
MAX_EVENT_CHARS = 200
MAX_IDENTITY_CHARS = 320
# Set by the sending library on each attempt: not part of what the message says.
_RESENT = frozenset({"sentAt"})

SUPPORTED_TYPES = ("identify", "track", "page", "screen", "group", "alias")

# The ContactEvent each view-like type becomes; its `name` and `category` go into the properties.
_VIEWED = {"page": "Page Viewed", "screen": "Screen Viewed"}
_ALIASED = "User Aliased"


def check_size(raw: bytes, *, batch: bool = False) -> None:
    """Raise InvalidMessageError when a raw body is over the message (32 KB) or batch (500 KB) limit."""
    limit = MAX_BATCH_BYTES if batch else MAX_MESSAGE_BYTES
    if len(raw) > limit:
        kind, fix = (
            ("batch", "split it into smaller batches")
            if batch
            else ("message", "trim its properties or traits")
        )
        raise InvalidMessageError(
            f"segmentio: {kind} of {len(raw)} bytes is over the {limit // 1024} KB limit: {fix}"
        )


def _fail(where: str, problem: str, fix: str) -> InvalidMessageError:
    return InvalidMessageError(f"segmentio: {where}: {problem}: {fix}")


def _object(message: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = message.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(
            where, f"'{key}' must be an object, got {type(value).__name__}", f"send '{key}' as a JSON object"
        )
    return dict(value)


def _identifier(value: Any) -> str | None:
    # Segment's libraries stringify numeric ids, so a number is accepted and kept as text.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        text = str(value).strip()
        return text or None
    return None


def _timestamp(message: Mapping[str, Any], where: str, received_at: datetime) -> datetime:
    """When it happened, corrected for the sender's clock as the Spec does; else receivedAt.

    The Spec: timestamp = receivedAt - (sentAt - originalTimestamp). A library sends the device's
    time of the call as `timestamp` and its clock at sending as `sentAt`, so that `timestamp` is the
    original one: a phone a day behind would otherwise file its events a day early. A message that
    Segment.com already processed (its webhooks destination, the Spec's examples) carries
    `receivedAt` or `originalTimestamp` and a corrected `timestamp`, kept as it is.
    """
    for key in ("timestamp", "originalTimestamp", "sentAt"):
        if key in message and message[key] is not None and parse_time(message[key]) is None:
            raise _fail(
                where, f"'{key}' is not an ISO-8601 time: {message[key]!r}", "send e.g. 2026-11-23T10:00:00Z"
            )
    stamp, sent = parse_time(message.get("timestamp")), parse_time(message.get("sentAt"))
    original = parse_time(message.get("originalTimestamp"))
    if stamp is not None and (original is not None or "receivedAt" in message):
        return stamp
    called = original or stamp
    if called is None:
        return received_at
    return called if sent is None else received_at - (sent - called)


def _message_id(message: Mapping[str, Any], where: str) -> str:
    value = message.get("messageId")
    if value is None:
        # The HTTP API lets senders omit it; a digest of the message keeps redelivery idempotent. Not
        # of `sentAt`: a library sets it anew on every retry of the same message.
        stable = {k: v for k, v in message.items() if k not in _RESENT}
        digest = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()
        return f"derived-{digest[:32]}"
    if not isinstance(value, str) or not value:
        raise _fail(
            where, "'messageId' must be a non-empty string", "send a unique id per message or omit it"
        )
    if len(value) > MAX_ID_CHARS:
        # Stored ids are at most 255 characters (PostgreSQL refuses longer ones): the same long id
        # always gives the same digest, so a retry is still recognised.
        return f"long-{hashlib.sha256(value.encode()).hexdigest()}"
    return value


def _short(value: str | None, what: str, where: str, limit: int = MAX_ID_CHARS) -> str | None:
    """`value`, or InvalidMessageError when it is longer than the store keeps."""
    if value is not None and len(value) > limit:
        raise _fail(where, f"{what} is {len(value)} characters long", f"send at most {limit}")
    return value


def parse_message(
    message: Any, *, received_at: datetime, where: str = "message", default_type: str | None = None
) -> tuple[list[Record], list[ContactEvent]]:
    """One Spec message as Records and ContactEvents, or InvalidMessageError naming field and fix."""
    if not isinstance(message, Mapping):
        raise _fail(
            where, f"expected a JSON object, got {type(message).__name__}", "send one object per message"
        )
    kind = message.get("type") or default_type
    if kind not in SUPPORTED_TYPES:
        raise _fail(where, f"type {kind!r} is not supported", f"send one of {', '.join(SUPPORTED_TYPES)}")
    user_id = _short(_identifier(message.get("userId")), "userId", where, MAX_ID_CHARS - len("anonymous:"))
    anonymous_id = _short(
        _identifier(message.get("anonymousId")), "anonymousId", where, MAX_ID_CHARS - len("anonymous:")
    )
    if user_id is None and anonymous_id is None:
        raise _fail(where, "userId or anonymousId is required", "send at least one of them")
    context = _object(message, "context", where)
    traits = _object(message, "traits", where)
    properties = _object(message, "properties", where)
    raw_traits = context.get("traits")
    context_traits: Mapping[str, Any] = raw_traits if isinstance(raw_traits, Mapping) else {}
    occurred = _timestamp(message, where, received_at)
    message_id = _message_id(message, where)

    identities = {"segmentio_user": user_id, "segmentio_anonymous": anonymous_id}
    for trait in ("email", "phone"):
        found = _identifier(traits.get(trait)) or _identifier(context_traits.get(trait))
        identities[trait] = _short(found, f"traits.{trait}", where, MAX_IDENTITY_CHARS)
    who = {k: v for k, v in identities.items() if v}
    payload = {**message, "type": kind, "messageId": message_id}

    if kind == "identify":
        external = user_id or f"anonymous:{anonymous_id}"
        return [Record("segmentio", "users", external, occurred, payload)], []
    if kind == "group":
        group_id = _short(_identifier(message.get("groupId")), "groupId", where)
        if group_id is None:
            raise _fail(where, "group needs 'groupId'", "send the id of the account or company")
        return [Record("segmentio", "groups", group_id, occurred, payload)], []
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise _fail(where, "track needs 'event'", "send the event name, e.g. 'Order Completed'")
        _short(event, "event", where, MAX_EVENT_CHARS)
        return [], [ContactEvent("segmentio", event, message_id, occurred, who, properties)]
    if kind == "alias":
        return [], [_alias(message, where, message_id, occurred, who, properties)]
    view_properties = {**properties, "name": message.get("name"), "category": message.get("category")}
    view_properties = {k: v for k, v in view_properties.items() if v is not None}
    return [], [ContactEvent("segmentio", _VIEWED[kind], message_id, occurred, who, view_properties)]


def _alias(
    message: Mapping[str, Any],
    where: str,
    message_id: str,
    occurred: datetime,
    who: dict[str, str],
    properties: dict[str, Any],
) -> ContactEvent:
    """`alias` as an event of the new userId, naming the previousId; see the module docstring."""
    if _identifier(message.get("userId")) is None:
        raise _fail(where, "alias needs 'userId'", "send the user's new id as userId")
    previous_id = _identifier(message.get("previousId"))
    if previous_id is None:
        raise _fail(where, "alias needs 'previousId'", "send the id the user was known by before")
    return ContactEvent(
        "segmentio", _ALIASED, message_id, occurred, who, {**properties, "previousId": previous_id}
    )


def parse_messages(messages: Sequence[Any], *, received_at: datetime) -> Batch:
    """Several messages as one Batch; the first invalid one raises, naming its position."""
    records: list[Record] = []
    events: list[ContactEvent] = []
    for index, message in enumerate(messages):
        more_records, more_events = parse_message(message, received_at=received_at, where=f"message {index}")
        records.extend(more_records)
        events.extend(more_events)
    return _batch(records, events)


def _batch(records: list[Record], events: list[ContactEvent]) -> Batch:
    return Batch(source="segmentio", stream="events", records=records, events=events, cursor=None, requests=0)


@dataclass(frozen=True)
class ParsedBatch:
    """A `/v1/batch` body: the Batch of its usable messages, and why each other one was left out."""

    batch: Batch
    skipped: list[str] = field(default_factory=list)


def parse_batch(body: Any, *, received_at: datetime) -> ParsedBatch:
    """A `/v1/batch` body (`{"batch": [...], "context": ...}`); a message that cannot be used is skipped.

    Only a body that is not a batch at all raises InvalidMessageError.
    """
    if not isinstance(body, Mapping) or not isinstance(body.get("batch"), list):
        raise _fail("batch", "'batch' must be a list of messages", 'send {"batch": [...]}')
    shared_context = _object(body, "context", "batch")
    shared_integrations = _object(body, "integrations", "batch")
    sent_at = body.get("sentAt")
    records: list[Record] = []
    events: list[ContactEvent] = []
    skipped: list[str] = []
    for index, message in enumerate(body["batch"]):
        where = f"message {index}"
        try:
            if isinstance(message, Mapping):
                merged = dict(message)
                merged["context"] = {**shared_context, **_object(message, "context", where)}
                merged["integrations"] = {**shared_integrations, **_object(message, "integrations", where)}
                if sent_at is not None:
                    merged.setdefault("sentAt", sent_at)
                message = merged
            more_records, more_events = parse_message(message, received_at=received_at, where=where)
        except InvalidMessageError as exc:
            skipped.append(str(exc))
            continue
        records.extend(more_records)
        events.extend(more_events)
    return ParsedBatch(_batch(records, events), skipped)
