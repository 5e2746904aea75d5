"""Planner statistics on PostgreSQL after a sync wrote much of the store, before segments are evaluated.

PostgreSQL plans from statistics that ANALYZE gathers. Autovacuum gathers them in the background, a
minute or more after the rows arrived, and not at all where it is turned off; the segment
evaluation at the end of a first sync would plan over tables it believes empty (BENCHMARKS.md:
the incremental run at 1M contacts 1.12 s unanalyzed against 0.35 s analyzed). A run that wrote
more than autovacuum's own trigger (50 rows plus 10% of the table) analyzes first. SQLite plans
without statistics here (its plans are tested in tests/segments/test_plans.py), so it is left alone.

The delivery queue grows outside syncs, by fan-out: `analyze_grown` applies the same trigger to
one table, counting the changes since its last ANALYZE as PostgreSQL's own statistics report them.
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
    if not _past_trigger(conn, "records", rows_written):
        return False
    conn.execute(text(f"ANALYZE {', '.join(_TABLES)}"))
    return True


def analyze_grown(conn: Connection, table: str, *, rows_written: int) -> bool:
    """ANALYZE `table` once it changed past the trigger since its last ANALYZE; True if it ran.

    `rows_written` are this transaction's changes, which PostgreSQL's counter does not hold yet (it
    also lags other sessions' commits by up to a second, so the trigger may fire a little early).
    """
    if conn.dialect.name != "postgresql" or rows_written <= 0:
        return False
    earlier = conn.execute(
        text("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relid = CAST(:t AS regclass)"),
        {"t": table},
    ).scalar()
    if not _past_trigger(conn, table, rows_written + int(earlier or 0)):
        return False
    conn.execute(text(f'ANALYZE "{table}"'))
    return True


def _past_trigger(conn: Connection, table: str, changed: int) -> bool:
    """Whether `changed` rows pass autovacuum's trigger for `table` as last estimated."""
    # -1 for a table never analyzed (PostgreSQL 14 and later).
    estimate = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}
    ).scalar_one()
    return changed > _BASE_ROWS + _SHARE * max(float(estimate), 0.0)
