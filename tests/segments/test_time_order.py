"""Time never runs backwards for a segment, and a sync still storing is not skipped by a later evaluation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, insert, select

from sync.segments import ScoringConfig, evaluate_segments
from sync.store.tables import segments, sync_runs, transitions
from tests.segments.conftest import NOW, Seeder, segments_from, stored_scores

PAID_7D = segments_from({"paid7": {"name": "P", "all": [{"event": "invoice.paid", "within": "7d"}]}})
CITY = segments_from({"hamburg": {"name": "H", "all": [{"field": "city", "op": "eq", "value": "Hamburg"}]}})


def _moves(conn: Connection, contact_id: int) -> list[tuple[str, datetime]]:
    t = transitions.c
    rows = conn.execute(select(t.kind, t.occurred_at).where(t.contact_id == contact_id).order_by(t.id))
    return [(kind, at) for kind, at in rows]


def _last_evaluated(conn: Connection, key: str) -> Any:
    return conn.execute(select(segments.c.last_evaluated_at).where(segments.c.key == key)).scalar_one()


def _running_run(conn: Connection, *, started_at: datetime, trigger: str = "schedule") -> int:
    row = {"trigger": trigger, "status": "running", "started_at": started_at, "stats": {}}
    return int(conn.execute(insert(sync_runs).values(row).returning(sync_runs.c.id)).scalar_one())


def test_a_run_at_an_earlier_now_does_not_undo_what_a_webhook_evaluation_saw(engine: Engine) -> None:
    webhook = NOW + timedelta(minutes=5)
    with engine.begin() as conn:
        s = Seeder(conn)
        c = s.contact()
        evaluate_segments(conn, PAID_7D, now=NOW - timedelta(hours=1))
        s.event(c, "invoice.paid", webhook)
        evaluate_segments(conn, PAID_7D, now=webhook, contact_ids=[c])  # the webhook path
        # The end of a sync that read its clock at NOW, before the webhook came in.
        report = evaluate_segments(conn, PAID_7D, now=NOW)
        assert report.now == webhook  # raised to the latest evaluation: no `left` stamped 12:00
        evaluate_segments(conn, PAID_7D, now=NOW + timedelta(minutes=10))
        assert _moves(conn, c) == [("entered", webhook)]  # not left at 12:00, nor entered again


def test_last_evaluated_at_never_moves_backwards(engine: Engine) -> None:
    later = NOW + timedelta(hours=1)
    with engine.begin() as conn:
        s = Seeder(conn)
        evaluate_segments(conn, CITY, now=NOW)
        evaluate_segments(conn, CITY, now=later)
        ann = s.contact(at=later)
        s.value(ann, "city", "string", "Hamburg")
        report = evaluate_segments(conn, CITY, now=NOW)
        assert report.now == later
        assert _last_evaluated(conn, "hamburg") == later
        assert _moves(conn, ann) == [("entered", later)]


def test_contacts_a_running_sync_stores_after_a_later_evaluation_are_not_skipped(engine: Engine) -> None:
    started = NOW  # the sync's start, which stamps every contact it stores
    with engine.begin() as conn:
        evaluate_segments(conn, CITY, now=NOW - timedelta(hours=1))
        run = _running_run(conn, started_at=started)
        # Another evaluation (a webhook's run, a scheduled re-evaluation) while the sync still pulls.
        evaluate_segments(conn, CITY, now=NOW + timedelta(minutes=10))
        s = Seeder(conn)
        ann = s.contact(at=started)  # a page the sync stores afterwards: changed_at < last_evaluated_at
        s.value(ann, "city", "string", "Hamburg")
        report = evaluate_segments(conn, CITY, now=NOW + timedelta(minutes=20), run_id=run)
        assert [(r.mode, r.entered) for r in report.segments] == [("incremental", 1)]
        assert _moves(conn, ann) == [("entered", NOW + timedelta(minutes=20))]


def test_scores_of_contacts_a_running_sync_stores_after_a_later_scoring_are_not_skipped(
    engine: Engine,
) -> None:
    plain = ScoringConfig.model_validate({"events": [{"event": "app.used", "points": 2}]})  # timeless
    with engine.begin() as conn:
        s = Seeder(conn)
        evaluate_segments(conn, {}, now=NOW - timedelta(hours=1), scoring=plain)
        run = _running_run(conn, started_at=NOW)
        evaluate_segments(conn, {}, now=NOW + timedelta(minutes=10), scoring=plain)  # last scored then
        ann = s.contact(at=NOW)  # stored by the running sync afterwards, stamped with its start
        s.event(ann, "app.used", NOW - timedelta(days=1))
        evaluate_segments(conn, {}, now=NOW + timedelta(minutes=20), scoring=plain, run_id=run)
        assert stored_scores(conn).get(ann) == 2.0


def test_a_run_a_killed_process_left_running_a_day_ago_does_not_widen_incremental_runs(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact(at=NOW - timedelta(minutes=30))
        s.value(ann, "city", "string", "Berlin")
        evaluate_segments(conn, CITY, now=NOW)
        _running_run(conn, started_at=NOW - timedelta(days=2))  # its process was killed, long ago
        s.overwrite("city", "Hamburg")  # behind the engine's back: changed_at stays before the cutoff
        report = evaluate_segments(conn, CITY, now=NOW + timedelta(minutes=10))
        assert [(r.mode, r.entered) for r in report.segments] == [("incremental", 0)]


def test_a_hubspot_push_left_running_does_not_widen_incremental_runs(engine: Engine) -> None:
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact(at=NOW - timedelta(minutes=30))
        s.value(ann, "city", "string", "Berlin")
        evaluate_segments(conn, CITY, now=NOW)
        # A push stamps no contacts; one a killed process left `running` must not hold the cutoff back.
        _running_run(conn, started_at=NOW - timedelta(hours=1), trigger="push")
        s.overwrite("city", "Hamburg")  # behind the engine's back: changed_at stays before the cutoff
        report = evaluate_segments(conn, CITY, now=NOW + timedelta(minutes=10))
        assert [(r.mode, r.entered) for r in report.segments] == [("incremental", 0)]


def test_the_earliest_running_sync_is_read_through_its_partial_index(engine: Engine) -> None:
    """Every pushed batch is a run: the question each whole-store evaluation asks must not read them all."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's query plans; PostgreSQL plans by its statistics")
    plans: list[list[str]] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.startswith("SELECT min(sync_runs.started_at)"):
            plans.append(
                [row[3] for row in cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)]
            )

    with engine.begin() as conn:
        evaluate_segments(conn, CITY, now=NOW)
        event.listen(engine, "before_cursor_execute", explain)
        try:
            evaluate_segments(conn, CITY, now=NOW + timedelta(minutes=1))
        finally:
            event.remove(engine, "before_cursor_execute", explain)
    assert plans == [
        ["SEARCH sync_runs USING INDEX ix_sync_runs_started_at (started_at>? AND started_at<?)"]
    ], plans
