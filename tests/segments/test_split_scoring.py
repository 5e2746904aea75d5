"""A/B variants are stable and travel with transitions; lead scores follow their point rules."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import Engine, select, update

from sync.registry import list_fields
from sync.segments import ScoringConfig, evaluate_segments, variant
from sync.segments.scoring import decay_weight
from sync.store.tables import contacts, field_definitions, memberships, transitions
from tests.segments.conftest import NOW, Seeder, segments_from, stored_scores

SPLIT = {
    "trial": {
        "name": "Trial",
        "all": [{"field": "plan", "op": "eq", "value": "trial"}],
        "split": {"a": 50, "b": 50},
        "holdout": 10,
    }
}


def test_split_variants_are_stable_balanced_and_on_the_transition(engine: Engine) -> None:
    configured = segments_from(SPLIT)
    with engine.begin() as conn:
        s = Seeder(conn)
        ids = [s.contact() for _ in range(600)]
        for cid in ids:
            s.value(cid, "plan", "enum", "trial")
        evaluate_segments(conn, configured, now=NOW)
        stored = dict(conn.execute(select(memberships.c.contact_id, memberships.c.variant)).tuples().all())
        on_transitions = dict(
            conn.execute(select(transitions.c.contact_id, transitions.c.variant)).tuples().all()
        )
    assert stored == on_transitions == {cid: variant(configured["trial"], "trial", cid) for cid in ids}
    counts = Counter(stored.values())
    assert set(counts) == {"a", "b", "holdout"}
    assert 230 <= counts["a"] <= 310 and 230 <= counts["b"] <= 310 and 35 <= counts["holdout"] <= 90
    # Stable: the same contact lands in the same variant whenever it is asked, and per segment key.
    assert [variant(configured["trial"], "trial", cid) for cid in ids] == [stored[cid] for cid in ids]
    assert [variant(configured["trial"], "other_key", cid) for cid in ids] != [stored[cid] for cid in ids]


def test_a_member_keeps_its_variant_across_runs(engine: Engine) -> None:
    configured = segments_from(SPLIT)
    with engine.begin() as conn:
        s = Seeder(conn)
        ids = [s.contact() for _ in range(20)]
        for cid in ids:
            s.value(cid, "plan", "enum", "trial")
        evaluate_segments(conn, configured, now=NOW)
        before = dict(conn.execute(select(memberships.c.contact_id, memberships.c.variant)).tuples().all())
        conn.execute(update(contacts).values(changed_at=NOW + timedelta(hours=1)))
        report = evaluate_segments(conn, configured, now=NOW + timedelta(hours=1))
        after = dict(conn.execute(select(memberships.c.contact_id, memberships.c.variant)).tuples().all())
    assert report.transitions == 0 and before == after


SCORING = ScoringConfig.model_validate(
    {
        "half_life": "7d",
        "events": [
            {"event": "invoice.paid", "points": 10, "max_points": 25, "within": "30d"},
            {"event": "app.used", "points": 1},
        ],
        "conditions": [{"when": {"field": "role", "op": "eq", "value": "CTO"}, "points": 15}],
    }
)


def test_scores_add_points_caps_windows_decay_and_conditions(engine: Engine) -> None:
    hot = {"hot": {"name": "Hot leads", "all": [{"lead_score": {"gte": 40}}]}}
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob, gone = s.contact(), s.contact(), s.contact(state="merged")
        s.value(ann, "role", "enum", "CTO")
        for days in (1, 2, 3):  # 3 x 10 capped at 25; within a half-life, so undecayed
            s.event(ann, "invoice.paid", NOW - timedelta(days=days))
        s.event(ann, "invoice.paid", NOW - timedelta(days=40))  # outside the window
        for days in (1, 10, 100):  # weight 1, 1/2, 0 (after ten half-lives)
            s.event(ann, "app.used", NOW - timedelta(days=days))
        s.event(gone, "app.used", NOW)
        report = evaluate_segments(conn, segments_from(hot), now=NOW, scoring=SCORING)
        scores = stored_scores(conn)
        assert scores == {ann: 41.5, bob: 0.0}
        assert report.scores_changed == 2 and report.segments[0].entered_examples == [ann]
        field = conn.execute(select(field_definitions).where(field_definitions.c.name == "lead_score")).one()
        assert (field.origin, field.type, field.source) == ("system", "decimal", "crmhub")
        assert "lead_score" in [f.name for f in list_fields(conn, source="crmhub")]
        # A store from before holds it with no source: `crmhub fields --source crmhub` lists it all the same.
        conn.execute(
            update(field_definitions).where(field_definitions.c.name == "lead_score").values(source=None)
        )
        assert "lead_score" in [f.name for f in list_fields(conn, source="crmhub")]


def test_max_points_of_a_penalty_is_a_floor_in_full_and_incremental_runs(engine: Engine) -> None:
    scoring = ScoringConfig.model_validate(
        {
            "events": [
                {"event": "ticket.opened", "points": -5, "max_points": 12},
                {"event": "login", "points": 1},
            ]
        }
    )
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob = s.contact(), s.contact()
        for _ in range(4):  # 4 x -5 = -20, held at -12
            s.event(ann, "ticket.opened", NOW)
        s.event(bob, "ticket.opened", NOW)
        s.event(bob, "login", NOW)
        evaluate_segments(conn, {}, now=NOW, scoring=scoring)
        assert stored_scores(conn) == {ann: -12.0, bob: -4.0}
        s.event(bob, "ticket.opened", NOW)
        s.event(bob, "ticket.opened", NOW)
        s.event(bob, "ticket.opened", NOW)
        conn.execute(
            update(contacts).where(contacts.c.id == bob).values(changed_at=NOW + timedelta(minutes=1))
        )
        evaluate_segments(conn, {}, now=NOW + timedelta(minutes=1), scoring=scoring, contact_ids=[bob])
        assert stored_scores(conn) == {ann: -12.0, bob: -11.0}


def test_time_dependent_scores_move_segments_without_new_data(engine: Engine) -> None:
    hot = {"hot": {"name": "Hot leads", "all": [{"lead_score": {"gte": 20}}]}}
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact(at=NOW - timedelta(days=1))
        s.event(ann, "invoice.paid", NOW)
        s.event(ann, "invoice.paid", NOW - timedelta(days=1))
        evaluate_segments(conn, segments_from(hot), now=NOW, scoring=SCORING)
        assert stored_scores(conn)[ann] == 20.0
        later = NOW + timedelta(days=29, hours=12)  # one payment has left the 30-day window
        report = evaluate_segments(conn, segments_from(hot), now=later, scoring=SCORING)
        assert report.segments[0].mode == "incremental"
        # The other is 29.5 days old: four whole half-lives, so 10 / 16.
        assert (report.segments[0].left, stored_scores(conn)[ann]) == (1, 0.625)


def test_timeless_scoring_rescores_only_changed_contacts(engine: Engine) -> None:
    plain = ScoringConfig.model_validate({"events": [{"event": "app.used", "points": 2}]})
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob = s.contact(at=NOW - timedelta(hours=2)), s.contact(at=NOW - timedelta(hours=2))
        evaluate_segments(conn, {}, now=NOW - timedelta(hours=1), scoring=plain)
        s.event(ann, "app.used", NOW)
        s.event(bob, "app.used", NOW)
        conn.execute(update(contacts).where(contacts.c.id == bob).values(changed_at=NOW))
        report = evaluate_segments(conn, {}, now=NOW, scoring=plain)
        assert report.scores_changed == 1 and stored_scores(conn) == {ann: 0.0, bob: 2.0}
        changed = ScoringConfig.model_validate({"events": [{"event": "app.used", "points": 3}]})
        evaluate_segments(conn, {}, now=NOW + timedelta(hours=1), scoring=changed)
        assert stored_scores(conn) == {ann: 3.0, bob: 3.0}


def test_decay_weight_halves_per_whole_half_life() -> None:
    weights = [decay_weight("7d", NOW - timedelta(days=d), NOW) for d in (0, 6, 7, 8, 15, 77, 78)]
    assert weights == [1.0, 1.0, 1.0, 0.5, 0.25, 0.5**10, 0.0]
    assert decay_weight(None, NOW - timedelta(days=999), NOW) == 1.0


def test_a_scoring_condition_on_an_unknown_field_keeps_the_scores_as_they_were(engine: Engine) -> None:
    right = ScoringConfig.model_validate(
        {"conditions": [{"when": {"field": "role", "op": "eq", "value": "CTO"}, "points": 15}]}
    )
    typo = ScoringConfig.model_validate(
        {"conditions": [{"when": {"not": {"field": "rol", "op": "eq", "value": "x"}}, "points": 20}]}
    )
    with engine.begin() as conn:
        s = Seeder(conn)
        cto, intern = s.contact(), s.contact()
        s.value(cto, "role", "string", "CTO")
        s.value(intern, "role", "string", "Intern")
        evaluate_segments(conn, {}, now=NOW, scoring=right, declared=set())
        before = stored_scores(conn)
        report = evaluate_segments(conn, {}, now=NOW + timedelta(hours=1), scoring=typo, declared=set())
        assert stored_scores(conn) == before == {cto: 15, intern: 0}
    assert report.held == {
        "[scoring]": ['scoring.conditions[0].when.not.field: unknown field "rol"; did you mean "role"?']
    }


def test_scoring_where_matches_booleans_and_numbers_by_json_type(engine: Engine) -> None:
    typed = ScoringConfig.model_validate(
        {
            "events": [
                {"event": "app.used", "where": {"trial": True}, "points": 5},
                {"event": "app.used", "where": {"seats": 3}, "points": 1},
            ]
        }
    )
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob = s.contact(), s.contact()
        s.event(ann, "app.used", NOW - timedelta(days=1), trial=True, seats=3)
        s.event(bob, "app.used", NOW - timedelta(days=1), trial="true", seats="3")  # text is not true or 3
        evaluate_segments(conn, {}, now=NOW, scoring=typed)
        assert stored_scores(conn) == {ann: 6.0, bob: 0.0}
