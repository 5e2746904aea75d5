"""Partial value indexes on field_values, ending in contact_id; a boolean one too

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = ("value_text", "value_num", "value_time", "value_bool")


def upgrade() -> None:
    """Replace the full (field_id, value) indexes with partial ones that cover contact_id."""
    with op.batch_alter_table("field_values") as batch:
        for column in ("value_text", "value_num", "value_time"):
            batch.drop_index(f"ix_field_values_field_id_{column}")
    for column in _COLUMNS:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_field_values_{column}",
            "field_values",
            ["field_id", column, "contact_id"],
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    """Back to the full (field_id, value) indexes."""
    for column in _COLUMNS:
        op.drop_index(f"ix_field_values_{column}", table_name="field_values")
    for column in ("value_text", "value_num", "value_time"):
        op.create_index(f"ix_field_values_field_id_{column}", "field_values", ["field_id", column])
