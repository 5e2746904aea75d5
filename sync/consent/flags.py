"""System fields crmhub writes itself (hygiene flags, consent confirmation) so segments can use them."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from field_mapping.types import FieldType
from sync.fields import StoredField, clear_values, create_field, save_values, stored_value
from sync.store.tables import contacts, field_definitions

__all__ = ["SYSTEM_FIELDS", "clear_flag", "set_flag", "system_field"]

# name -> (type, label); segments name them like any field (`{ field = "dormant", op = "missing" }`).
SYSTEM_FIELDS: dict[str, tuple[FieldType, str]] = {
    "dormant": (FieldType.BOOLEAN, "Dormant: no engagement for the hygiene period"),
    "email_deliverable": (FieldType.BOOLEAN, "E-mail deliverable (false after a bounce)"),
    "phone_valid": (FieldType.BOOLEAN, "Phone valid (false after a sender reported it invalid)"),
    "consent_confirmed_at": (FieldType.DATETIME, "Latest consent confirmation (opt-in) on any channel"),
}
_SOURCE = "crmhub"


def system_field(conn: Connection, name: str, now: datetime) -> StoredField:
    """System field `name`, creating its definition and column on first use."""
    fd = field_definitions.c
    found = conn.execute(select(fd.id, fd.type).where(fd.name == name)).first()
    if found is not None:
        return StoredField.of(found.id, found.type)
    ftype, label = SYSTEM_FIELDS[name]
    return create_field(conn, name, ftype, now=now, label=label, origin="system", source=_SOURCE)


def set_flag(
    conn: Connection, values: Mapping[int, Any], name: str, *, now: datetime, latest: bool = False
) -> None:
    """Set system field `name` for each contact to its value; bump the contacts for segment evaluation.

    `latest=True` (time values) keeps a stored value that is later than the new one.
    """
    if not values:
        return
    field = system_field(conn, name, now)
    # The record time decides which value stays: a time value is its own record time.
    rows = [
        (contact_id, field, stored_value(field.type, value), _SOURCE, value if latest else now)
        for contact_id, value in sorted(values.items())
    ]
    save_values(conn, rows)
    _touch(conn, values.keys(), now)


def clear_flag(conn: Connection, contact_ids: Collection[int], name: str, *, now: datetime) -> None:
    """Remove system field `name` from the contacts."""
    if not contact_ids:
        return
    clear_values(conn, system_field(conn, name, now), contact_ids)
    _touch(conn, contact_ids, now)


def _touch(conn: Connection, contact_ids: Collection[int], now: datetime) -> None:
    # Incremental segment evaluation only looks at contacts whose changed_at moved.
    conn.execute(update(contacts).where(contacts.c.id.in_(sorted(contact_ids))).values(changed_at=now))
