"""events: (name, occurred_at, contact_id) instead of (name, occurred_at), so windowed conditions read only the index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the covering index, then drop the one it replaces (about 25 s per 10M events on SQLite)."""
    op.create_index("ix_events_name_occurred_at_contact_id", "events", ["name", "occurred_at", "contact_id"])
    op.drop_index("ix_events_name_occurred_at", table_name="events")


def downgrade() -> None:
    """Back to the (name, occurred_at) index."""
    op.create_index("ix_events_name_occurred_at", "events", ["name", "occurred_at"])
    op.drop_index("ix_events_name_occurred_at_contact_id", table_name="events")
