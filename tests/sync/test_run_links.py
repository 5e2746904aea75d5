"""Rows that name the run that wrote them are found by index: a run's own transitions, deleting a run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event, insert, inspect, text

from sync.segments.queries import moved
from sync.store import create_store_engine, upgrade
from sync.store.tables import contacts, segments, sync_runs, transitions
from tests.pg_plans import rows_read

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# cursors holds a row per stream (a dozen): reading it whole when a run is deleted costs nothing.
_UNINDEXED = {("cursors", ("run_id",))}


def test_every_foreign_key_has_an_index_that_leads_with_it(empty_store_url: str) -> None:
    engine = create_store_engine(empty_store_url)
    upgrade(engine)
    insp = inspect(engine)
    missing = set()
    for table in insp.get_table_names():
        keys = [tuple(i["column_names"]) for i in insp.get_indexes(table)]
        keys += [tuple(u["column_names"]) for u in insp.get_unique_constraints(table)]
        keys.append(tuple(insp.get_pk_constraint(table)["constrained_columns"]))
        for fk in insp.get_foreign_keys(table):
            columns = tuple(fk["constrained_columns"])
            if not any(key[: len(columns)] == columns for key in keys):
                missing.add((table, columns))
    engine.dispose()
    # Without one, each deleted parent row has the database read the whole referring table.
    assert missing == _UNINDEXED


def _history(engine: Engine, *, theirs: int, ours: int) -> int:
    """`theirs` transitions of an earlier run and `ours` of a later one; the later run's id."""
    with engine.begin() as conn:
        cid = conn.execute(
            insert(contacts).values(created_at=T0, updated_at=T0, changed_at=T0).returning(contacts.c.id)
        ).scalar_one()
        sid = conn.execute(
            insert(segments)
            .values(key="vip", name="VIP", rule={}, rule_version="v1", created_at=T0, updated_at=T0)
            .returning(segments.c.id)
        ).scalar_one()
        runs = [
            conn.execute(
                insert(sync_runs)
                .values(trigger="manual", status="succeeded", started_at=T0, finished_at=T0, stats={})
                .returning(sync_runs.c.id)
            ).scalar_one()
            for _ in range(2)
        ]
        row = {
            "segment_id": sid,
            "contact_id": cid,
            "occurred_at": T0,
            "reason": "rule",
            "rule_version": "v1",
        }
        conn.execute(
            insert(transitions),
            [
                row | {"kind": "entered" if i % 2 == 0 else "left", "contact_seq": i + 1, "run_id": run}
                for i, run in enumerate([runs[0]] * theirs + [runs[1]] * ours)
            ],
        )
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE transitions"))
    return int(runs[1])


def test_what_a_sync_prints_at_its_end_reads_its_own_transitions_only(engine: Engine) -> None:
    run = _history(engine, theirs=3000, ours=3)
    executed: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            executed.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    with engine.connect() as conn:
        assert moved(conn, run_id=run) == {"vip": (2, 1)}
    event.remove(engine, "before_cursor_execute", record)
    [(sql, parameters)] = executed
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)]
            assert not any(step.startswith("SCAN transitions") for step in plan), plan
            assert any("ix_transitions_run_id" in step for step in plan), plan
        else:
            driver = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", parameters)
            [[[found]]] = driver.fetchall()
            # A year's store read 2 million transitions here, for the few of the run that just ended.
            assert rows_read(found["Plan"], "transitions") <= 3, found
