"""System fields crmhub writes itself (hygiene flags, consent confirmation) so segments can use them."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from field_mapping.types import FieldType
from sync.fields import VALUE_ROW, VALUE_ROWS
from sync.store.tables import contacts, field_definitions, field_values
from sync.store.upsert import write_rows

__all__ = ["SYSTEM_FIELDS", "clear_flag", "field_id", "set_flag"]

# name -> (type, label); segments name them like any field (`{ field = "dormant", op = "missing" }`).
SYSTEM_FIELDS: dict[str, tuple[FieldType, str]] = {
    "dormant": (FieldType.BOOLEAN, "Dormant: no engagement for the hygiene period"),
    "email_deliverable": (FieldType.BOOLEAN, "E-mail deliverable (false after a bounce)"),
    "phone_valid": (FieldType.BOOLEAN, "Phone valid (false after a sender reported it invalid)"),
    "consent_confirmed_at": (FieldType.DATETIME, "Latest consent confirmation (opt-in) on any channel"),
}
_SOURCE = "crmhub"


def field_id(conn: Connection, name: str, now: datetime) -> int:
    """The id of system field `name`, creating its definition on first use."""
    fd = field_definitions.c
    found = conn.execute(select(fd.id).where(fd.name == name)).scalar()
    if found is not None:
        return int(found)
    ftype, label = SYSTEM_FIELDS[name]
    row = {"name": name, "type": ftype.value, "label": label, "origin": "system", "source": _SOURCE}
    stmt = insert(field_definitions).values(**row, first_seen_at=now, updated_at=now).returning(fd.id)
    return int(conn.execute(stmt).scalar_one())


def set_flag(
    conn: Connection, values: Mapping[int, Any], name: str, *, now: datetime, latest: bool = False
) -> None:
    """Set system field `name` for each contact to its value; bump the contacts for segment evaluation.

    `latest=True` (time values) keeps a stored value that is later than the new one.
    """
    if not values:
        return
    fid = field_id(conn, name, now)
    build = VALUE_ROWS[SYSTEM_FIELDS[name][0]]
    rows = [
        build(contact_id, fid, value, _SOURCE, value if latest else now)
        for contact_id, value in sorted(values.items())
    ]
    write_rows(
        conn,
        field_values,
        VALUE_ROW,
        rows,
        keys=("contact_id", "field_id"),
        update=tuple(VALUE_ROW[2:]),
        newer="updated_at" if latest else None,
    )
    _touch(conn, values.keys(), now)


def clear_flag(conn: Connection, contact_ids: Collection[int], name: str, *, now: datetime) -> None:
    """Remove system field `name` from the contacts."""
    if not contact_ids:
        return
    fid = field_id(conn, name, now)
    fv = field_values.c
    conn.execute(delete(field_values).where(fv.field_id == fid, fv.contact_id.in_(sorted(contact_ids))))
    _touch(conn, contact_ids, now)


def _touch(conn: Connection, contact_ids: Collection[int], now: datetime) -> None:
    # Incremental segment evaluation only looks at contacts whose changed_at moved.
    conn.execute(update(contacts).where(contacts.c.id.in_(sorted(contact_ids))).values(changed_at=now))
