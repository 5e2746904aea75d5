"""The field registry as users see it: each field with its type, origin, first sighting and fill rate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, func, or_, select

from sync.store.tables import contacts, field_definitions, field_values


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """One custom field and how full it is."""

    name: str
    type: str
    label: str
    origin: str  # rule | auto | system
    source: str | None
    path: str | None
    first_seen_at: datetime
    filled: int
    fill_rate: float  # share of live contacts with a value


def list_fields(conn: Connection, *, source: str | None = None) -> list[FieldInfo]:
    """Every field (of one source, if given), with how many live contacts hold a value, in one query."""
    fd, fv = field_definitions.c, field_values.c
    has_value = or_(
        fv.value_text.is_not(None),
        fv.value_num.is_not(None),
        fv.value_time.is_not(None),
        fv.value_bool.is_not(None),
    )
    live = select(func.count()).select_from(contacts).where(contacts.c.state != "merged").scalar_subquery()
    filled = func.count(fv.contact_id)
    query = (
        select(fd.name, fd.type, fd.label, fd.origin, fd.source, fd.path, fd.first_seen_at, filled, live)
        .select_from(field_definitions.outerjoin(field_values, and_(fv.field_id == fd.id, has_value)))
        .group_by(fd.id, fd.name, fd.type, fd.label, fd.origin, fd.source, fd.path, fd.first_seen_at)
        .order_by(fd.source, fd.name)
    )
    if source is not None:
        query = query.where(fd.source == source)
    return [
        FieldInfo(name, ftype, label, origin, src, path, first_seen, int(n), (n / total) if total else 0.0)
        for name, ftype, label, origin, src, path, first_seen, n, total in conn.execute(query)
    ]
