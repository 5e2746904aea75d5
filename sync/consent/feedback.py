"""Feedback that SMS and e-mail senders POST to crmhub: unsubscribes, complaints, bounces, bad numbers.

The body (the route verifies its signature first):
`{"type": "contact.unsubscribed" | "contact.complained" | "contact.bounced" | "contact.invalid_number",
"timestamp": ISO-8601, "data": {"contact_id": <data.contact.id of our webhook>, "email"?, "phone"?,
"channel"?, "reason"?, "webhook_id"?}}`. Unsubscribes and complaints opt the contact out of the
channel; bounces and invalid numbers mark the address or number undeliverable (the identity turns
invalid, `email_deliverable` / `phone_valid` turn false), list it as suppressed and cancel the
contact's pending entries for that channel.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import Connection, or_, select, update

from field_mapping.normalize import EXTENSION, dialable, normalize_email, normalize_phone
from sync.consent.actions import cancel_entries, current_contact, opt_out
from sync.consent.config import ConsentConfig
from sync.consent.exceptions import ConsentError, UnknownContactError
from sync.consent.flags import set_flag
from sync.consent.suppression import suppress_values
from sync.store.tables import contact_identities

if TYPE_CHECKING:
    from sync.engine import Evaluate

__all__ = ["Feedback", "FeedbackData", "apply_feedback"]

FeedbackType = Literal[
    "contact.unsubscribed", "contact.complained", "contact.bounced", "contact.invalid_number"
]

# A bounce is about an e-mail address, an invalid number about a phone: (identity kind, flag field).
_UNDELIVERABLE = {
    "contact.bounced": ("email", "email_deliverable"),
    "contact.invalid_number": ("phone", "phone_valid"),
}


class FeedbackData(BaseModel):
    """`data` of a feedback body: who (our contact id) and, optionally, which address and why."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    contact_id: int = Field(ge=1)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, min_length=1, max_length=16)
    reason: str | None = Field(default=None, max_length=500)
    webhook_id: str | None = Field(default=None, max_length=64)


class Feedback(BaseModel):
    """A sender's feedback body; unknown keys are ignored so senders may add their own."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: FeedbackType
    timestamp: AwareDatetime
    data: FeedbackData


def _proof(feedback: Feedback, endpoint: str) -> dict[str, Any]:
    data = feedback.data
    return {
        "type": feedback.type,
        "timestamp": feedback.timestamp.isoformat(),
        "endpoint": endpoint,
        "webhook_id": data.webhook_id,
        "reason": data.reason,
    }


def _channel(config: ConsentConfig | None, name: str, endpoint: str) -> str:
    """`name` as a configured channel, or a ConsentError saying which sender sent it."""
    try:
        return (config or ConsentConfig()).channel(name)
    except ConsentError as exc:
        raise ConsentError(f"feedback from {endpoint}: {exc}") from None


def apply_feedback(
    conn: Connection,
    feedback: Feedback,
    *,
    endpoint: str,
    channel: str | None,
    now: datetime,
    evaluate: Evaluate | None,
    endpoints: Collection[str] = (),
    config: ConsentConfig | None = None,
    region: str = "US",
) -> dict[str, Any]:
    """Apply one feedback body from sender `endpoint` (channel `channel`) in the caller's transaction.

    `endpoints` names every endpoint needing the channel (their pending entries are cancelled too);
    `region` reads a national phone number. Raises UnknownContactError, ConsentError.
    """
    data = feedback.data
    contact_id = current_contact(conn, data.contact_id)
    if contact_id is None:
        raise UnknownContactError(
            f"feedback from {endpoint}: contact {data.contact_id} is not in the store (erased, or never "
            "synced): send data.contact_id as our webhook's data.contact.id"
        )
    source = f"feedback:{endpoint}"[:32]
    wanted = {endpoint, *endpoints}
    if feedback.type in ("contact.unsubscribed", "contact.complained"):
        used = data.channel or channel
        if used is None:
            raise ConsentError(
                f"feedback from {endpoint}: {feedback.type} names no channel: set data.channel, or "
                f"requires_consent on webhooks.endpoints.{endpoint}"
            )
        used = _channel(config, used, endpoint)
        result = opt_out(
            conn,
            contact_id=contact_id,
            channel=used,
            source=source,
            proof=_proof(feedback, endpoint),
            now=now,
            evaluate=evaluate,
            endpoints=wanted,
            config=config,
        )
        return {"type": feedback.type, **result.as_dict()}
    kind, flag = _UNDELIVERABLE[feedback.type]
    used = _channel(config, data.channel or channel or ("email" if kind == "email" else "sms"), endpoint)
    values = _undeliverable(conn, contact_id, kind, data, region)
    suppressed = suppress_values(
        conn, [(kind, v) for v in values], reason=feedback.type.removeprefix("contact."), now=now
    )
    set_flag(conn, {contact_id: False}, flag, now=now)
    cancelled = cancel_entries(
        conn, [contact_id], used, endpoints=wanted, reason=feedback.type.removeprefix("contact."), now=now
    )
    report = evaluate(conn, now=now, run_id=None, contact_ids=[contact_id]) if evaluate else None
    return {
        "type": feedback.type,
        "contact_id": contact_id,
        "channel": used,
        "flagged": flag,
        "identities": len(values),
        "suppressed": suppressed,
        "cancelled": cancelled,
        "left": sum(s.left for s in report.segments) if report else 0,
    }


def _undeliverable(
    conn: Connection, contact_id: int, kind: str, data: FeedbackData, region: str
) -> list[str]:
    """Mark the reported address or number (every one of that kind when none is named) invalid."""
    ci = contact_identities.c
    raw = data.email if kind == "email" else data.phone
    stmt = select(ci.value).where(ci.contact_id == contact_id, ci.kind == kind)
    if raw:
        value = normalize_email(raw)[0] if kind == "email" else normalize_phone(raw, region)[0]
        if kind == "phone":
            # The sender dialled the number without its extension: every extension of it is that line.
            line = dialable(value)
            stmt = stmt.where(or_(ci.value == line, ci.value.startswith(line + EXTENSION, autoescape=True)))
        else:
            stmt = stmt.where(ci.value == value)
    values = list(conn.execute(stmt).scalars())
    if raw and not values:
        # The sender knows an address we do not hold for this contact: list it all the same.
        values = [value]
    conn.execute(
        update(contact_identities)
        .where(ci.contact_id == contact_id, ci.kind == kind, ci.value.in_(values))
        .values(valid=False)
    )
    return values
