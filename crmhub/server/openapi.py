"""The outbound `segment.entered` / `segment.left` webhooks, described in the app's OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import FastAPI, Header
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SegmentWebhook", "describe_outbound_webhooks"]

ContactValue = str | int | float | bool | None


class WebhookSegment(BaseModel):
    """The segment a contact entered or left."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="Stable identifier of the segment.")
    name: str = Field(description="Display name of the segment.")


class WebhookContact(BaseModel):
    """crmhub's contact id plus the fields the endpoint asked for (null when unknown)."""

    model_config = ConfigDict(extra="allow")
    # Typed extras: the fields an endpoint asks for arrive beside `id` as plain JSON values.
    __pydantic_extra__: dict[str, ContactValue] = Field(init=False)

    id: int = Field(description="crmhub's contact id.")
    merged_ids: list[int] | None = Field(
        default=None,
        description="Present once other contacts were merged into this one: their ids, which you may know "
        "the person by. Apply the message to them too.",
    )
    truncated_fields: list[str] | None = Field(
        default=None,
        description="Present when a value was cut (or left null) to keep the body under 20 kB: those "
        "fields' names. The contact's full values are in crmhub.",
    )


class WebhookTransition(BaseModel):
    """The change itself: its id, the contact's sequence number, why, when and which variant."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(description="crmhub's transition id.")
    sequence: int = Field(
        ge=1,
        description="Per-contact counter, increasing with each of the contact's transitions across "
        "segments; for one contact and segment, ignore a lower one after a higher one.",
    )
    reason: str = Field(description="Why: rule, unsubscribed, merged, backfill, ...")
    evaluated_at: datetime = Field(description="When the segment rule was evaluated, ISO 8601 in UTC.")
    variant: str | None = Field(description="A/B variant the contact was assigned, if the segment splits.")
    rule_version: str | None = Field(default=None, description="Version of the segment rule that decided.")


class WebhookData(BaseModel):
    """The segment, the contact and the transition."""

    model_config = ConfigDict(extra="forbid")

    segment: WebhookSegment
    contact: WebhookContact
    transition: WebhookTransition


class SegmentWebhook(BaseModel):
    """Body of a crmhub Standard Webhooks v1 delivery (docs/webhook.schema.json); under 20 kB."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["segment.entered", "segment.left"] = Field(description="What happened.")
    timestamp: datetime = Field(
        description="When the transition happened (not when it was delivered), ISO 8601 in UTC."
    )
    data: WebhookData


WebhookId = Annotated[
    str,
    Header(
        alias="webhook-id",
        description="Stable across retries and replays: the consumer's idempotency key.",
        examples=["msg_6f1d2c0e8a3b4d5f9e7a1b2c3d4e5f60"],
    ),
]
WebhookTimestamp = Annotated[
    int,
    Header(
        alias="webhook-timestamp",
        description="Unix seconds when this attempt was signed; refuse ones far from your clock.",
    ),
]
WebhookSignature = Annotated[
    str,
    Header(
        alias="webhook-signature",
        description=(
            "Space-separated `v1,<base64 HMAC-SHA256>` over `{webhook-id}.{webhook-timestamp}.{body}` with "
            "the endpoint's secret (the part after `whsec_`, base64-decoded); one per active secret."
        ),
    ),
]

_ANSWERS: dict[int | str, dict[str, str]] = {
    204: {"description": "Any 2xx within the timeout: delivered."},
    410: {"description": "Gone: crmhub disables the endpoint until an operator re-enables it."},
    429: {"description": "Too many requests (like timeouts, 408, 425 and 5xx): retried with backoff."},
}
_ABOUT = (
    "Sent to each endpoint subscribed to the segment, signed per Standard Webhooks v1 (docs/webhooks.md). "
    "At least once: drop repeats by `webhook-id`; order by `data.transition.sequence` per contact and "
    "segment."
)


def _document(
    body: SegmentWebhook,
    webhook_id: WebhookId,
    webhook_timestamp: WebhookTimestamp,
    webhook_signature: WebhookSignature,
) -> None:
    """Documentation only: crmhub sends this request, it never serves it."""


def describe_outbound_webhooks(app: FastAPI) -> None:
    """Add `segment.entered` and `segment.left` to the document's `webhooks` (OpenAPI 3.1)."""
    for name, summary in (
        ("segment.entered", "A contact entered a segment"),
        ("segment.left", "A contact left a segment"),
    ):
        app.webhooks.post(
            name,
            summary=summary,
            description=_ABOUT,
            status_code=204,
            responses=_ANSWERS,
            operation_id=name.replace(".", "_"),
        )(_document)
