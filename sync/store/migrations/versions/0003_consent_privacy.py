"""Erased contact numbers in erasure_log; an index on merge_log.merged_contact_id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.store.types import Id

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Keep erased contacts' numbers so they are never reused; index merged numbers for lookups."""
    with op.batch_alter_table("erasure_log") as batch:
        batch.add_column(sa.Column("contact_id", Id, nullable=True))
    op.create_index("ix_merge_log_merged_contact_id", "merge_log", ["merged_contact_id"])


def downgrade() -> None:
    """Drop the index and the column."""
    op.drop_index("ix_merge_log_merged_contact_id", table_name="merge_log")
    with op.batch_alter_table("erasure_log") as batch:
        batch.drop_column("contact_id")
