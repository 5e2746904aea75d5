"""erasure_log: an index on contact_id, so the highest erased number is a seek on every page

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index the erased contacts' numbers."""
    op.create_index("ix_erasure_log_contact_id", "erasure_log", ["contact_id"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_erasure_log_contact_id", table_name="erasure_log")
