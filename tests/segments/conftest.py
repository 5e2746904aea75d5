"""A migrated store and small helpers to seed contacts, fields, events and consent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection, insert, select

from field_mapping.types import STORAGE, FieldType, to_columns
from sync.segments import SegmentsConfig
from sync.store.tables import (
    consent_records,
    contact_identities,
    contacts,
    events,
    field_definitions,
    field_values,
)

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_segments = TypeAdapter(SegmentsConfig)


def segments_from(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a `[segments]` table the way settings do."""
    return _segments.validate_python(raw)


class Seeder:
    """Writes test data straight into the store tables."""

    @staticmethod
    def values_table() -> Any:
        """The field values table, for tests that change data behind the engine's back."""
        return field_values

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._event_no = 0

    def contact(self, *, state: str = "active", at: datetime = NOW, **extra: Any) -> int:
        values = {"state": state, "created_at": at, "updated_at": at, "changed_at": at} | extra
        return int(self.conn.execute(insert(contacts).values(**values).returning(contacts.c.id)).scalar_one())

    def field(self, name: str, type_: str) -> int:
        found = self.conn.execute(
            select(field_definitions.c.id).where(field_definitions.c.name == name)
        ).scalar()
        if found is not None:
            return int(found)
        row = {
            "name": name,
            "type": type_,
            "label": name,
            "origin": "rule",
            "first_seen_at": NOW,
            "updated_at": NOW,
        }
        return int(
            self.conn.execute(
                insert(field_definitions).values(**row).returning(field_definitions.c.id)
            ).scalar_one()
        )

    def value(self, contact_id: int, name: str, type_: str, value: Any) -> None:
        field_id = self.field(name, type_)
        column = STORAGE[FieldType(type_)].value
        row = {
            "contact_id": contact_id,
            "field_id": field_id,
            "source": "test",
            "updated_at": NOW,
            column: value,
        }
        self.conn.execute(insert(field_values).values(**row))

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


__all__ = ["NOW", "Seeder", "segments_from", "to_columns"]
