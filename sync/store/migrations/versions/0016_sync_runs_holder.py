"""sync_runs: the lease holder each run ran under

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08

A run that takes a lease whose holder ran out closes the runs that holder left `running`. Without
the holder on the run, the closing went by source, and the `segments` lease (no source) closed every
run over several sources (source NULL), live syncs of other processes included: the evaluation then
moved its cut past what they were still storing. Runs begun before this revision keep NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not a batch: SQLite adds and (from 3.35) drops a column in place, whereas a
# batch copies the table, and dropping the old one sets every reference to its runs to NULL
# (records, quarantine, transitions and cursors point at sync_runs ON DELETE SET NULL).


def upgrade() -> None:
    """Add the nullable column."""
    op.add_column("sync_runs", sa.Column("holder", sa.String(length=100), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    op.drop_column("sync_runs", "holder")
