"""deliveries: a partial (endpoint, next_attempt_at, id) index, so a claim walks due deliveries in order

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index the open deliveries (those with a next attempt) by endpoint and due time."""
    where = sa.text("next_attempt_at IS NOT NULL")
    op.create_index(
        "ix_deliveries_endpoint_next_attempt_at_id",
        "deliveries",
        ["endpoint", "next_attempt_at", "id"],
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    """Drop the due index."""
    op.drop_index("ix_deliveries_endpoint_next_attempt_at_id", table_name="deliveries")
