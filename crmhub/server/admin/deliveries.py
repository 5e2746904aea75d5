"""`/admin/deliveries`: recent deliveries with their attempts, and replay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import HTTPException, Query, status
from pydantic import BaseModel, Field, model_validator

from crmhub.server.admin._common import MAX_ID, NO_NUL, Svc, not_found, router, utc
from sync.store import write_transaction
from webhooks.admin import attempts_of, list_deliveries, replay

DeliveryStatus = Literal["pending", "leased", "failed", "dead", "succeeded", "suppressed", "cancelled"]


class AttemptOut(BaseModel):
    """One attempt to send a delivery."""

    attempted_at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response_excerpt: str | None


class DeliveryOut(BaseModel):
    """One transition sent to one endpoint, with its attempts."""

    id: int
    endpoint: str
    webhook_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    reason: str | None
    created_at: datetime
    kind: str
    contact_id: int
    segment: str
    tries: list[AttemptOut] = Field(description="Each attempt, oldest first")


class ReplayIn(BaseModel):
    """What to send again: one delivery by id, or those created since a time and/or in a status."""

    id: int | None = Field(default=None, ge=1, le=MAX_ID, description="This delivery, whatever its status")
    since: datetime | None = Field(default=None, description="Created at or after (UTC if no zone)")
    status: Literal["dead", "failed", "cancelled"] | None = Field(
        default=None, description="Only this status (default: dead and failed; cancelled only by name)"
    )
    endpoint: str | None = Field(default=None, description="Only this endpoint")

    @model_validator(mode="after")
    def _says_what(self) -> ReplayIn:
        if self.id is None and self.since is None and self.status is None:
            raise ValueError("say what to replay: id, since or status")
        return self


class ReplayOut(BaseModel):
    """How many deliveries are due again, and the entries held back (no longer true or allowed), by why."""

    replayed: int
    withheld: dict[str, int] = Field(default_factory=dict)


@router.get("/deliveries", summary="Recent deliveries with their attempts, newest first")
def get_deliveries(
    svc: Svc,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    endpoint: Annotated[str | None, Query(pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DeliveryOut]:
    """What `crmhub deliveries` shows, plus each attempt."""
    with svc.engine.connect() as conn:
        rows = list_deliveries(conn, status=status_, endpoint=endpoint, limit=limit)
        tries = attempts_of(conn, [r["id"] for r in rows])
    return [DeliveryOut.model_validate(r | {"tries": tries[r["id"]]}) for r in rows]


@router.post(
    "/deliveries/replay",
    summary="Send deliveries again under their original webhook-id (write)",
    responses={
        404: {"description": "No such delivery, or it is being sent right now."},
        409: {"description": "The delivery is an entry no longer true or allowed (left, unsubscribed)."},
    },
)
def post_replay(svc: Svc, body: ReplayIn) -> ReplayOut:
    """What `crmhub deliveries replay` does; the worker is woken at once."""
    if body.endpoint is not None and body.endpoint not in svc.settings.webhooks.endpoints:
        known = ", ".join(svc.settings.webhooks.endpoints) or "none"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f'endpoint "{body.endpoint}" is not configured: one of {known}',
        )
    since = utc(body.since, "since") if body.since is not None else None
    with write_transaction(svc.engine) as conn:
        done = replay(
            conn,
            svc.clock(),
            endpoints=svc.settings.webhooks.endpoints,
            channels=svc.settings.consent.channels,
            delivery_id=body.id,
            since=since,
            status=body.status,
            endpoint=body.endpoint,
        )
    if body.id is not None and done.withheld:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"delivery {body.id}: held back: {next(iter(done.withheld))}"
        )
    if body.id is not None and done.replayed == 0:
        raise not_found(f"delivery {body.id}: not found, or being sent right now")
    svc.wake_worker()
    return ReplayOut(replayed=done.replayed, withheld=done.withheld)
