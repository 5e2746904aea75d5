"""consent_records: (contact_id, channel, recorded_at, status), so the record in force is read from the index

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

Two records of one channel at the same time (an opt-in and an opt-out stamped the same second) were
decided by insertion order, so a late-arriving opt-in could undo an opt-out. The record in force is
now the latest, and on the same time the one whose status sorts last (not an opt-in before an
opt-in: see sync.consent.records.in_force_order). With status in the index that order needs no sort,
and the index covers the read: a consent condition over 1M contacts on SQLite 0.40 -> 0.28 s.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_OLD, _NEW = (
    "ix_consent_records_contact_id_channel_recorded_at",
    "ix_consent_records_contact_id_channel_recorded_at_status",
)


def upgrade() -> None:
    """Add the index with status, then drop the one it replaces."""
    op.create_index(_NEW, "consent_records", ["contact_id", "channel", "recorded_at", "status"])
    op.drop_index(_OLD, table_name="consent_records")


def downgrade() -> None:
    """Back to the (contact_id, channel, recorded_at) index."""
    op.create_index(_OLD, "consent_records", ["contact_id", "channel", "recorded_at"])
    op.drop_index(_NEW, table_name="consent_records")
