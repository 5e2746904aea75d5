"""sync_runs: a partial index on started_at of the runs still running

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

Every pushed batch (a provider webhook, a Segment.com call) is a run of its own, so the table grows
by thousands of rows a day; each whole-store evaluation and each HubSpot push asks for the earliest
start of a run still `running` (sync.segments.evaluate, sync.hubspot_push), which read all of them.
A few rows are running at any time: the index holds only those.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index the running runs by their start."""
    where = sa.text("status = 'running'")
    op.create_index(
        "ix_sync_runs_started_at", "sync_runs", ["started_at"], sqlite_where=where, postgresql_where=where
    )


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_sync_runs_started_at", table_name="sync_runs")
