"""Planner statistics on PostgreSQL after a sync wrote much of the store, before segments are evaluated.

PostgreSQL plans from statistics that ANALYZE gathers. Autovacuum gathers them in the background, a
minute or more after the rows arrived, and not at all where it is turned off; the segment
evaluation at the end of a first sync would plan over tables it believes empty (BENCHMARKS.md:
the incremental run at 1M contacts 1.12 s unanalyzed against 0.35 s analyzed). A run that wrote
more than autovacuum's own trigger (50 rows plus 10% of the table) analyzes first. SQLite plans
without statistics here (its plans are tested in tests/segments/test_plans.py), so it is left alone.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

# The tables segment evaluation and identity resolution read.
_TABLES = (
    "records",
    "contacts",
    "contact_identities",
    "contact_fields",
    "events",
    "memberships",
    "consent_records",
)

# autovacuum_analyze_threshold and autovacuum_analyze_scale_factor, PostgreSQL's defaults.
_BASE_ROWS = 50
_SHARE = 0.1


def refresh_statistics(conn: Connection, *, rows_written: int) -> bool:
    """ANALYZE the tables segments read when `rows_written` records pass the trigger; True if it ran."""
    if conn.dialect.name != "postgresql" or rows_written <= _BASE_ROWS:
        return False
    # -1 for a table never analyzed (PostgreSQL 14 and later).
    estimate = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = 'records'::regclass")
    ).scalar_one()
    if rows_written <= _BASE_ROWS + _SHARE * max(float(estimate), 0.0):
        return False
    conn.execute(text(f"ANALYZE {', '.join(_TABLES)}"))
    return True
