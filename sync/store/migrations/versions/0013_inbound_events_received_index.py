"""inbound_events: an index on received_at, so claims older than the retention are pruned by a range

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

One row per provider event, Segment.com message and sender feedback was kept forever; each sync now
deletes those past sync.inbound.RETENTION, which without the index would read the whole table.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index the claims' times."""
    op.create_index("ix_inbound_events_received_at", "inbound_events", ["received_at"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_inbound_events_received_at", table_name="inbound_events")
