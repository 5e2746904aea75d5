"""Which contacts an incremental run re-evaluates, and what a rule change leaves stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from sync.segments import evaluate_segments
from sync.store.tables import contacts, memberships, segments
from tests.segments.conftest import NOW, Seeder, segments_from


def _city(*cities: str) -> dict[str, Any]:
    return {"hamburg": {"name": "Hamburg", "all": [{"field": "city", "op": "in", "value": list(cities)}]}}


def _members(conn: Connection, key: str) -> set[int]:
    sid = select(segments.c.id).where(segments.c.key == key).scalar_subquery()
    return set(
        conn.execute(select(memberships.c.contact_id).where(memberships.c.segment_id == sid)).scalars()
    )


def test_changed_since_reaches_back_before_the_last_evaluation(engine: Engine) -> None:
    configured = segments_from(_city("Hamburg"))
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact(at=NOW - timedelta(hours=2))
        s.value(ann, "city", "string", "Berlin")
        evaluate_segments(conn, configured, now=NOW)
        # Ann moved, stamped with a time before that evaluation (as a sync stamps with its start).
        s.overwrite("city", "Hamburg")
        conn.execute(update(contacts).values(changed_at=NOW - timedelta(hours=1)))
        later = NOW + timedelta(hours=1)
        assert evaluate_segments(conn, configured, now=later).transitions == 0
        report = evaluate_segments(conn, configured, now=later, changed_since=NOW - timedelta(minutes=90))
        assert (report.segments[0].mode, report.segments[0].entered) == ("incremental", 1)
        assert _members(conn, "hamburg") == {ann}


def test_a_changed_rule_is_stored_and_the_run_after_it_is_incremental_again(engine: Engine) -> None:
    with engine.begin() as conn:
        s = Seeder(conn)
        s.value(s.contact(), "city", "string", "Berlin")
        evaluate_segments(conn, segments_from(_city("Hamburg")), now=NOW)
        changed = segments_from(_city("Hamburg", "Berlin"))
        first = evaluate_segments(conn, changed, now=NOW + timedelta(hours=1))
        stored = conn.execute(select(segments.c.rule)).scalar_one()
        again = evaluate_segments(conn, changed, now=NOW + timedelta(hours=2))
    assert stored["all"][0]["value"] == ["Hamburg", "Berlin"]
    assert [r.mode for r in (*first.segments, *again.segments)] == ["full", "incremental"]


def test_a_rule_change_moves_the_segments_naming_it_in_a_regular_run(engine: Engine) -> None:
    def pair(plan: str) -> dict[str, Any]:
        return {
            "b": {"name": "B", "all": [{"field": "plan", "op": "eq", "value": plan}]},
            "a": {"name": "A", "all": [{"in_segment": "b"}]},
        }

    with engine.begin() as conn:
        s = Seeder(conn)
        pro, basic = s.contact(at=NOW - timedelta(hours=1)), s.contact(at=NOW - timedelta(hours=1))
        s.value(pro, "plan", "string", "pro")
        s.value(basic, "plan", "string", "basic")
        evaluate_segments(conn, segments_from(pair("pro")), now=NOW)
        # No contact changed since: `a` runs incrementally, over the contacts `b` moved in this run.
        report = evaluate_segments(conn, segments_from(pair("basic")), now=NOW + timedelta(hours=1))
        assert {r.key: r.mode for r in report.segments} == {"b": "full", "a": "incremental"}
        assert _members(conn, "b") == _members(conn, "a") == {basic}
