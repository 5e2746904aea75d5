"""records, quarantine and transitions: an index on run_id, the run that wrote each row

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08

The three columns refer to sync_runs with ON DELETE SET NULL, and none had an index: deleting a run
(`crmhub db prune`) had the database read each whole table for the rows that refer to it, 0.5 s per
run at a year's history (630,000 runs, 2,000,000 transitions), and `moved(run_id=...)`, which every
`crmhub sync` reads at its end to print what entered and left, read every transition: 1.4 s there
against 7 ms on a fresh store. Every row has a run, so a partial index would hold them all anyway.
cursors.run_id is left without one: the table holds a row per stream, a dozen.

On PostgreSQL the index builds take a write lock on their table while they run (a transaction
cannot build CONCURRENTLY): a few seconds on a big store, once.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_TABLES = ("records", "quarantine", "transitions")


def upgrade() -> None:
    """Index the run of each row."""
    for table in _TABLES:
        op.create_index(f"ix_{table}_run_id", table, ["run_id"])


def downgrade() -> None:
    """Drop the indexes."""
    for table in reversed(_TABLES):
        op.drop_index(f"ix_{table}_run_id", table_name=table)
