"""How SQLite runs a whole evaluation: the plans that keep 1M contacts within the time the issue sets.

Each test captures the statement that fills a segment's new member set and asks SQLite for its query
plan; the answers are the same without these plans, only slower (bench/segments.py, BENCHMARKS.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from sync.segments import ScoringConfig, evaluate_segments
from tests.segments.conftest import NOW, Seeder, segments_from


def _fill_plan(engine: Engine, raw: dict[str, Any], dialect: str = "sqlite") -> list[str]:
    """The query plan of the segment's member-set statement in a run over every contact."""
    if engine.dialect.name != dialect:
        pytest.skip(f"{dialect}'s query plans")
    plans: list[list[str]] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        # Asked while the scratch tables exist: a run over every contact drops them at its end.
        if statement.startswith("INSERT INTO _seg_new"):
            if dialect == "sqlite":
                select_part = statement[statement.index("SELECT") :]
                rows = cursor.connection.execute(f"EXPLAIN QUERY PLAN {select_part}", parameters)
                plans.append([row[3] for row in rows])
            else:
                rows = cursor.connection.execute(f"EXPLAIN {statement}", parameters)
                plans.append([row[0].strip() for row in rows])

    with engine.connect() as conn, conn.begin() as trans:
        s = Seeder(conn)
        ann = s.contact()
        s.value(ann, "city", "string", "Hamburg")
        s.value(ann, "age", "integer", 51)
        s.value(ann, "role", "enum", "CTO")
        s.event(ann, "invoice.paid", NOW - timedelta(days=1))
        s.consent(ann, "sms", "opted_in", NOW - timedelta(days=3))
        event.listen(engine, "before_cursor_execute", explain)
        try:
            evaluate_segments(conn, segments_from({"probe": {"name": "Probe", **raw}}), now=NOW, full=True)
        finally:
            event.remove(engine, "before_cursor_execute", explain)
            trans.rollback()
    [plan] = plans
    return plan


def test_a_windowed_event_condition_reads_only_the_covering_events_index(engine: Engine) -> None:
    plan = _fill_plan(engine, {"all": [{"event": "invoice.paid", "within": "7d"}]})
    # A range of one name's events in (name, occurred_at, contact_id): no event row is read.
    assert any("COVERING INDEX ix_events_name_occurred_at_contact_id" in step for step in plan), plan
    assert not any("CORRELATED" in step for step in plan), plan


def test_an_event_condition_without_a_window_stays_a_seek_per_contact(engine: Engine) -> None:
    plan = _fill_plan(engine, {"all": [{"event": "invoice.paid", "performed": False}]})
    assert any("ix_events_contact_id_name_occurred_at" in step for step in plan), plan


def test_field_conditions_are_tested_on_one_joined_row(engine: Engine) -> None:
    rule = {
        "all": [
            {"field": "age", "op": "gt", "value": 50},
            {"field": "city", "op": "eq", "value": "Hamburg"},
            {
                "any": [
                    {"field": "role", "op": "in", "value": ["CTO"]},
                    {"not": {"field": "role", "op": "missing"}},
                ]
            },
        ]
    }
    plan = _fill_plan(engine, rule)
    # contact_fields read once (scanned, or sought per contact), and no list built per condition.
    assert len([step for step in plan if "contact_fields" in step.split()]) == 1, plan
    assert not any("LIST SUBQUERY" in step for step in plan), plan


def test_consent_reads_the_latest_record_with_one_seek(engine: Engine) -> None:
    plan = _fill_plan(engine, {"all": [{"consent": "sms"}]})
    # One seek to the contact's record in force, from the index alone (status is in it, ties and all);
    # "an opt-in with no later one" took a second per record.
    index = "ix_consent_records_contact_id_channel_recorded_at_status"
    steps = [step for step in plan if index in step]
    assert steps == [f"SEARCH cr USING COVERING INDEX {index} (contact_id=? AND channel=?)"], plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


def test_scratch_tables_are_keyed_by_rowid(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's schema")
    configured = segments_from({"probe": {"name": "Probe", "all": [{"consent": "sms"}]}})
    with engine.connect() as conn, conn.begin() as trans:
        ann = Seeder(conn).contact()
        evaluate_segments(conn, configured, now=NOW)
        # A run over a few contacts keeps its scratch tables on the connection.
        evaluate_segments(conn, configured, now=NOW + timedelta(minutes=1), contact_ids=[ann])
        scratch = conn.exec_driver_sql(
            "SELECT type, name FROM sqlite_temp_master WHERE name LIKE '%seg%'"
        ).all()
        trans.rollback()
    # An INTEGER key is the rowid; with a BIGINT one SQLite kept a second b-tree per table.
    assert sorted(scratch) == [("table", "_seg_new"), ("table", "_seg_scope")]


def test_new_scores_find_contacts_without_a_row_by_anti_join_on_postgresql(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's query plans")
    plans: list[str] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        # Asked while the scratch tables exist: a run over every contact drops them at its end.
        if statement.startswith("INSERT INTO contact_fields"):
            rows = cursor.connection.execute(f"EXPLAIN {statement}", parameters).fetchall()
            plans.append("\n".join(row[0] for row in rows))

    scoring = ScoringConfig.model_validate({"events": [{"event": "app.used", "points": 1, "within": "7d"}]})
    with engine.connect() as conn, conn.begin() as trans:
        s = Seeder(conn)
        ann = s.contact()
        s.event(ann, "app.used", NOW - timedelta(days=1))
        event.listen(engine, "before_cursor_execute", explain)
        try:
            evaluate_segments(conn, {}, now=NOW, scoring=scoring)
        finally:
            event.remove(engine, "before_cursor_execute", explain)
            trans.rollback()
    [plan] = plans
    # NOT IN cannot be an anti-join; past work_mem it scanned the list for every scored contact.
    assert "Anti Join" in plan and "SubPlan" not in plan, plan


@pytest.mark.parametrize(
    "rule",
    [
        {"event": "invoice.paid", "performed": False},
        {"not": {"event": "invoice.paid", "count": {"gte": 2}}},
    ],
)
def test_not_over_a_set_is_an_anti_join_on_postgresql(engine: Engine, rule: dict[str, Any]) -> None:
    plan = _fill_plan(engine, {"all": [rule]}, dialect="postgresql")
    # NOT IN (subquery) cannot be an anti-join; past work_mem it scanned the list for every contact.
    assert any("Anti Join" in step for step in plan), plan
    assert not any("SubPlan" in step for step in plan), plan


def _contacts_run_plans(engine: Engine, raw: dict[str, Any]) -> dict[str, list[str]]:
    """SQLite's plans for the one-pass rule test and the membership read of a run over given contacts."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's query plans")
    wanted = {"rules": "SELECT contacts.id, contacts.state", "held": "SELECT memberships.segment_id"}
    plans: dict[str, list[str]] = {}

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        for name, prefix in wanted.items():
            if statement.startswith(prefix):
                rows = cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
                plans[name] = [row[3] for row in rows]

    configured = segments_from({"probe": {"name": "Probe", **raw}})
    with engine.connect() as conn, conn.begin() as trans:
        s = Seeder(conn)
        ann = s.contact()
        s.event(ann, "invoice.paid", NOW - timedelta(days=1))
        evaluate_segments(conn, configured, now=NOW)
        event.listen(engine, "before_cursor_execute", explain)
        try:
            evaluate_segments(conn, configured, now=NOW + timedelta(minutes=1), contact_ids=[ann])
        finally:
            event.remove(engine, "before_cursor_execute", explain)
            trans.rollback()
    return plans


@pytest.mark.parametrize(
    "rule",
    [{"event": "invoice.paid", "within": "7d"}, {"event": "invoice.paid", "performed": False}],
)
def test_a_run_over_given_contacts_tests_events_in_the_covering_index(
    engine: Engine, rule: dict[str, Any]
) -> None:
    plans = _contacts_run_plans(engine, {"all": [rule]})
    # EXISTS (SELECT *) made SQLite read the row of every matching event, a random page each.
    steps = [step for step in plans["rules"] if "SEARCH ev" in step]
    assert steps and all("COVERING INDEX ix_events_contact_id_name_occurred_at" in step for step in steps), (
        plans
    )


def test_a_run_over_given_contacts_reads_memberships_from_the_contact_index_alone(engine: Engine) -> None:
    plans = _contacts_run_plans(engine, {"all": [{"event": "invoice.paid", "within": "7d"}]})
    assert any("COVERING INDEX ix_memberships_contact_id" in step for step in plans["held"]), plans
