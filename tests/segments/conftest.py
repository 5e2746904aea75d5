"""A migrated store and small helpers to seed contacts, fields, events and consent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection, insert, select, update

from field_mapping.types import FieldType, to_columns
from sync.fields import StoredField, create_field, load_fields
from sync.segments import SegmentsConfig
from sync.store.field_columns import fields_table
from sync.store.tables import consent_records, contact_identities, contacts, events

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_segments = TypeAdapter(SegmentsConfig)


def segments_from(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a `[segments]` table the way settings do."""
    return _segments.validate_python(raw)


def stored_scores(conn: Connection) -> dict[int, float]:
    """Every stored lead score by contact."""
    held = load_fields(conn)["lead_score"].column
    table = fields_table([held])
    query = select(table.c.contact_id, table.c[held]).where(table.c[held].is_not(None))
    return dict(conn.execute(query).tuples().all())


class Seeder:
    """Writes test data straight into the store tables."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._event_no = 0

    def contact(self, *, state: str = "active", at: datetime = NOW, **extra: Any) -> int:
        values = {"state": state, "created_at": at, "updated_at": at, "changed_at": at} | extra
        return int(self.conn.execute(insert(contacts).values(**values).returning(contacts.c.id)).scalar_one())

    def field(self, name: str, type_: str) -> int:
        return self._field(name, type_).id

    def _field(self, name: str, type_: str) -> StoredField:
        found = load_fields(self.conn).get(name)
        if found is not None:
            return found
        return create_field(
            self.conn, name, FieldType(type_), now=NOW, label=name, origin="rule", source=None
        )

    def value(self, contact_id: int, name: str, type_: str, value: Any) -> None:
        held = self._field(name, type_).column
        table = fields_table([held])
        set_value = update(table).where(table.c.contact_id == contact_id).values({held: value})
        if self.conn.execute(set_value).rowcount == 0:
            self.conn.execute(insert(table).values({"contact_id": contact_id, held: value}))

    def overwrite(self, name: str, value: Any) -> None:
        """Set a field for every contact holding a value of it, behind the engine's back."""
        held = load_fields(self.conn)[name].column
        table = fields_table([held])
        self.conn.execute(update(table).where(table.c[held].is_not(None)).values({held: value}))

    def event(self, contact_id: int, name: str, at: datetime, **properties: Any) -> None:
        self._event_no += 1
        row = {
            "contact_id": contact_id,
            "name": name,
            "occurred_at": at,
            "source": "test",
            "external_id": f"e{self._event_no}",
            "properties": properties,
        }
        self.conn.execute(insert(events).values(**row))

    def consent(self, contact_id: int, channel: str, status: str, at: datetime = NOW) -> None:
        row = {
            "contact_id": contact_id,
            "channel": channel,
            "status": status,
            "source": "test",
            "proof": {},
            "recorded_at": at,
        }
        self.conn.execute(insert(consent_records).values(**row))

    def email(self, contact_id: int, address: str) -> None:
        row = {
            "contact_id": contact_id,
            "kind": "email",
            "value": address,
            "source": "test",
            "first_seen_at": NOW,
        }
        self.conn.execute(insert(contact_identities).values(**row))


__all__ = ["NOW", "Seeder", "segments_from", "stored_scores", "to_columns"]
