"""hubspot_push_state: the digest of what the last push wrote to each HubSpot contact

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sync.store.types import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table."""
    op.create_table(
        "hubspot_push_state",
        sa.Column("hubspot_id", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("pushed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("hubspot_id", name=op.f("pk_hubspot_push_state")),
    )


def downgrade() -> None:
    """Drop the table."""
    op.drop_table("hubspot_push_state")
