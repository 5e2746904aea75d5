"""The field registry as users see it: each field with its type, origin, first sighting and fill rate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, func, or_, select

from field_mapping.types import FieldType
from sync.fields import StoredField
from sync.store.field_columns import fields_table
from sync.store.tables import contacts, field_definitions


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
    """Every field (of one source, if given), with how many live contacts hold a value."""
    fd = field_definitions.c
    query = select(fd.id, fd.name, fd.type, fd.label, fd.origin, fd.source, fd.path, fd.first_seen_at)
    if source == "crmhub":
        # Stores from before lead_score was created with source "crmhub" hold it with none.
        query = query.where(or_(fd.source == source, and_(fd.origin == "system", fd.source.is_(None))))
    elif source is not None:
        query = query.where(fd.source == source)
    rows = conn.execute(query.order_by(fd.source, fd.name)).all()
    # A type this version does not know has no column here: it shows as empty.
    columns = {
        row.id: StoredField.of(row.id, row.type).column
        for row in rows
        if row.type in FieldType._value2member_map_
    }
    filled, total = _fill(conn, sorted(set(columns.values())))
    infos = []
    for fid, name, ftype, label, origin, src, path, first_seen in rows:
        n = filled.get(columns.get(fid, ""), 0)
        infos.append(
            FieldInfo(name, ftype, label, origin, src, path, first_seen, n, (n / total) if total else 0.0)
        )
    return infos


def _fill(conn: Connection, names: list[str]) -> tuple[dict[str, int], int]:
    """Per field column, how many live contacts hold a value; and how many live contacts there are."""
    live = contacts.c.state != "merged"
    total = int(conn.execute(select(func.count()).select_from(contacts).where(live)).scalar_one())
    if not names:
        return {}, total
    row = fields_table(names)
    # One pass over the table counts every column at once.
    query = (
        select(*(func.count(row.c[name]) for name in names))
        .select_from(row.join(contacts, contacts.c.id == row.c.contact_id))
        .where(live)
    )
    counts = conn.execute(query).one()
    return {name: int(n) for name, n in zip(names, counts, strict=True)}, total
