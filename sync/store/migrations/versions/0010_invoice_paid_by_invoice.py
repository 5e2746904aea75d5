"""events: Stripe's invoice.paid keyed by the invoice, as the connector now stores it

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Until 2026-12-02 an `invoice.paid` event was keyed by the Stripe event id (`evt_...`); since then by
the invoice id (`in_...`, also in the event's `properties.object_id`), so the invoice list, the event
history and a webhook store one payment, not three. A store synced before would otherwise count
each old payment twice after its next backfill. This re-keys those events; where the invoice's
payment is already stored under the new key, or twice under old ones, one copy is kept.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_PAID = "source = 'stripe' AND name = 'invoice.paid'"


def upgrade() -> None:
    """Drop the copies that would collide, then key the rest by their invoice."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    invoice = "json_extract({t}.properties, '$.object_id')" if sqlite else "{t}.properties ->> 'object_id'"
    mine, other = invoice.format(t="events"), invoice.format(t="kept")
    rekeyed = f"{_PAID} AND {mine} IS NOT NULL AND events.external_id <> {mine}"
    # A copy goes when another copy of the same payment stays: the one already keyed by the
    # invoice, else the first stored (the lowest id) of the old-keyed ones.
    op.execute(
        f"DELETE FROM events WHERE {rekeyed} AND EXISTS ("
        f"SELECT 1 FROM events AS kept WHERE kept.source = 'stripe' AND kept.name = 'invoice.paid' "
        f"AND {other} = {mine} AND (kept.external_id = {mine} OR kept.id < events.id))"
    )
    op.execute(f"UPDATE events SET external_id = {mine} WHERE {rekeyed}")


def downgrade() -> None:
    """Nothing to undo: an invoice-keyed payment is read the same way by every revision."""
