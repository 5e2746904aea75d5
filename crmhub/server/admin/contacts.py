"""`/admin/contacts`: one contact with its fields, identities, memberships, history and events."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field

from crmhub.server.admin._common import MAX_ID, ContactRef, Svc, not_found, resolve_contact, router
from sync.contact_view import ContactEvent, ContactView, contact_events, contact_view


class EventsPage(BaseModel):
    """A page of events, latest first; pass `next_before` as `before` for older ones."""

    contact_id: int
    events: list[ContactEvent]
    next_before: int | None = Field(description="null on the last page")


def _plain(value: Any) -> Any:
    # Decimal fields would otherwise reach JSON as strings.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


@router.get(
    "/contacts/{contact}",
    summary="A contact: fields, identities, memberships and history",
    responses={404: {"description": "No such contact."}},
)
def get_contact(svc: Svc, contact: ContactRef) -> ContactView:
    """The contact by id or e-mail address."""
    with svc.engine.connect() as conn:
        view = contact_view(conn, resolve_contact(svc, conn, contact))
    if view is None:
        raise not_found(f'contact "{contact}" not found: it was erased or merged a moment ago')
    return replace(view, fields={name: _plain(value) for name, value in view.fields.items()})


@router.get(
    "/contacts/{contact}/events",
    summary="A contact's events, latest first, paged",
    responses={404: {"description": "No such contact."}},
)
def get_contact_events(
    svc: Svc,
    contact: ContactRef,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="The last event id of the page before")
    ] = None,
) -> EventsPage:
    """Up to `limit` events older than event `before`."""
    with svc.engine.connect() as conn:
        contact_id = resolve_contact(svc, conn, contact)
        rows = contact_events(conn, contact_id, limit=limit, before=before)
    return EventsPage(
        contact_id=contact_id,
        events=rows,
        next_before=rows[-1].id if len(rows) == limit else None,
    )
