"""contact_fields and field_sources: one typed column per field instead of key-value rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from field_mapping.types import STORAGE, FieldType
from sync.store.field_columns import add_column, column_name, stamp
from sync.store.types import Json

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CHUNK = 5_000
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create both tables, a column per defined field, copy every value and its provenance over."""
    for name, extra in (
        ("contact_fields", []),
        ("field_sources", [sa.Column("sources", Json, nullable=False)]),
    ):
        op.create_table(
            name,
            sa.Column("contact_id", _ID, nullable=False),
            *extra,
            sa.ForeignKeyConstraint(
                ["contact_id"],
                ["contacts.id"],
                name=op.f(f"fk_{name}_contact_id_contacts"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("contact_id", name=op.f(f"pk_{name}")),
        )
    conn = op.get_bind()
    conn.exec_driver_sql(
        "INSERT INTO contact_fields (contact_id) SELECT DISTINCT contact_id FROM field_values"
    )
    for field_id, ftype in conn.exec_driver_sql("SELECT id, type FROM field_definitions").all():
        if ftype not in FieldType._value2member_map_:
            continue
        name = add_column(conn, field_id, FieldType(ftype))
        stored = STORAGE[FieldType(ftype)].value
        conn.execute(
            sa.text(
                f"UPDATE contact_fields SET {name} = (SELECT fv.{stored} FROM field_values fv"
                " WHERE fv.contact_id = contact_fields.contact_id AND fv.field_id = :field_id)"
            ),
            {"field_id": field_id},
        )
    sources = sa.table("field_sources", sa.column("contact_id", _ID), sa.column("sources", Json))
    for chunk in _provenance(conn):
        conn.execute(sa.insert(sources), chunk)
    op.drop_table("field_values")


def _provenance(conn: Any) -> Iterator[list[dict[str, Any]]]:
    """Each contact's {field id: [source, record time]}, in chunks of contacts."""
    rows = conn.execute(
        sa.select(
            sa.column("contact_id"),
            sa.column("field_id"),
            sa.column("source"),
            sa.column("updated_at", sa.DateTime(timezone=True)),
        )
        .select_from(sa.table("field_values"))
        .order_by(sa.column("contact_id"))
    )
    chunk: list[dict[str, Any]] = []
    current: int | None = None
    held: dict[str, list[str]] = {}
    for contact_id, field_id, source, updated_at in rows:
        if contact_id != current and current is not None:
            chunk.append({"contact_id": current, "sources": held})
            held = {}
            if len(chunk) >= _CHUNK:
                yield chunk
                chunk = []
        current = contact_id
        held[str(field_id)] = [source, stamp(_aware(updated_at))]
    if current is not None:
        chunk.append({"contact_id": current, "sources": held})
    if chunk:
        yield chunk


def _aware(value: Any) -> datetime:
    """A time as the driver returned it (SQLite: text), as an aware UTC datetime."""
    when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def downgrade() -> None:
    """Back to key-value rows: one field_values row per stored value, then drop the new tables."""
    op.create_table(
        "field_values",
        sa.Column("contact_id", _ID, nullable=False),
        sa.Column("field_id", _ID, nullable=False),
        sa.Column("value_text", sa.Text(), nullable=True),
        sa.Column("value_num", sa.Float(), nullable=True),
        sa.Column("value_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("value_bool", sa.Boolean(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_field_values_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["field_id"],
            ["field_definitions.id"],
            name=op.f("fk_field_values_field_id_field_definitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", "field_id", name=op.f("pk_field_values")),
    )
    conn = op.get_bind()
    sources = "json_extract(fs.sources, '$.\"{id}\"[{i}]')"
    if conn.dialect.name == "postgresql":
        sources = "fs.sources->'{id}'->>{i}"
    for field_id, ftype in conn.exec_driver_sql("SELECT id, type FROM field_definitions").all():
        if ftype not in FieldType._value2member_map_:
            continue
        name, stored = column_name(field_id, FieldType(ftype)), STORAGE[FieldType(ftype)].value
        source, at = sources.format(id=field_id, i=0), sources.format(id=field_id, i=1)
        if conn.dialect.name == "postgresql":
            at_value = f"CAST(({at}) || '+00:00' AS TIMESTAMPTZ)"
        else:
            at_value = f"replace({at}, 'T', ' ')"
        conn.exec_driver_sql(
            f"INSERT INTO field_values (contact_id, field_id, {stored}, source, updated_at)"
            f" SELECT cf.contact_id, {int(field_id)}, cf.{name}, COALESCE({source}, 'crmhub'),"
            f" COALESCE({at_value}, CURRENT_TIMESTAMP)"
            " FROM contact_fields cf LEFT JOIN field_sources fs ON fs.contact_id = cf.contact_id"
            f" WHERE cf.{name} IS NOT NULL"
        )
    for column in ("value_text", "value_num", "value_time", "value_bool"):
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_field_values_{column}",
            "field_values",
            ["field_id", column, "contact_id"],
            sqlite_where=where,
            postgresql_where=where,
        )
    op.drop_table("field_sources")
    op.drop_table("contact_fields")
