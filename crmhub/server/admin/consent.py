"""`POST /admin/contacts/{contact}/consent`: an opt-out or opt-in from a back office or preference page."""

from __future__ import annotations

from typing import Literal

from fastapi import HTTPException, status
from pydantic import BaseModel, Field

from crmhub.server.admin._common import NO_NUL, ContactRef, Svc, resolve_contact, router
from crmhub.server.services import Services
from crmhub.wiring import record_consent
from sync.consent import ConsentError, ConsentResult
from sync.store import write_transaction
from webhooks.inbound.receiver import STORE_ERRORS, STORE_RETRY_SECONDS, store_unavailable


class ConsentIn(BaseModel):
    """The statement to record now, as `crmhub consent opt-out|opt-in` records it."""

    channel: str = Field(min_length=1, max_length=16, pattern=NO_NUL, description="One of [consent] channels")
    status: Literal["opted_out", "opted_in"]
    reason: str | None = Field(default=None, max_length=500, pattern=NO_NUL, description="Kept as proof")


class ConsentOut(BaseModel):
    """What the statement did: segments left or entered, deliveries cancelled, identities suppressed."""

    contact_id: int
    channel: str
    status: str
    recorded: bool = Field(description="false when the same statement at the same time was stored before")
    suppressed: int
    cancelled: int
    left: int
    entered: int
    in_force: str | None = Field(description="The channel's record in force now: a newer one outranks this")
    in_force_at: str | None
    still_listed: list[str] = Field(
        description="Why the channel's identities stay suppressed after an opt-in"
    )


@router.post(
    "/contacts/{contact}/consent",
    summary="Record an opt-out or opt-in and act on it at once (write)",
    responses={
        404: {"description": "No such contact."},
        422: {"description": "A channel [consent] channels lacks, or a malformed body."},
        503: {"description": "The store is busy or down: send it again after Retry-After seconds."},
    },
)
def post_consent(svc: Svc, contact: ContactRef, body: ConsentIn) -> ConsentOut:
    """The person leaves (or may enter again) the segments that require the channel; the worker is woken."""
    settings = svc.settings
    try:
        channel = settings.consent.channel(body.channel)
    except ConsentError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    try:
        result = _record(svc, contact, channel, body)
    except STORE_ERRORS as exc:
        # An unsubscribe must not be lost to a busy store: the caller is told to send it again.
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            store_unavailable("admin consent", exc),
            headers={"Retry-After": str(STORE_RETRY_SECONDS)},
        ) from None
    svc.wake_worker()
    return ConsentOut.model_validate(result.as_dict() | {"still_listed": list(result.still_listed)})


def _record(svc: Services, contact: str, channel: str, body: ConsentIn) -> ConsentResult:
    with write_transaction(svc.engine) as conn:
        return record_consent(
            conn,
            svc.settings,
            contact_id=resolve_contact(svc, conn, contact),
            channel=channel,
            opted_out=body.status == "opted_out",
            source="admin",
            proof={"via": "POST /admin/contacts/{contact}/consent", "reason": body.reason},
            now=svc.clock(),
        )
