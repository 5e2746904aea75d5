"""What evaluation keeps between runs (scratch tables, built statements) never changes its answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, column, func, insert, select, table

from sync.segments import Rule, RuleCompiler, ScoringConfig, evaluate_segments, load_catalog
from sync.segments.compiler import clock_params
from sync.store.tables import contacts, memberships, segments, transitions
from tests.segments.conftest import NOW, Seeder, segments_from, stored_scores

CITY = {"hamburg": {"name": "Hamburg", "all": [{"field": "city", "op": "eq", "value": "Hamburg"}]}}
SCORING = ScoringConfig.model_validate(
    {"conditions": [{"when": {"field": "city", "op": "eq", "value": "Hamburg"}, "points": 5}]}
)
# The scratch tables by name, as another session would see them.
_SCOPE = table("_seg_scope", column("contact_id"))
_NEW = table("_seg_new", column("contact_id"))
_SCORE_NEW = table("_score_new", column("contact_id"), column("score"))
_SCORE_CHANGED = table("_score_changed", column("contact_id"))


def _members(conn: Connection, key: str) -> set[int]:
    sid = select(segments.c.id).where(segments.c.key == key).scalar_subquery()
    query = select(memberships.c.contact_id).where(memberships.c.segment_id == sid)
    return set(conn.execute(query).scalars())


def test_scratch_tables_kept_on_a_connection_never_leak_stale_rows(engine: Engine) -> None:
    configured = segments_from(CITY)
    with engine.connect() as conn:
        with conn.begin():
            s = Seeder(conn)
            ann, bob, cy = s.contact(), s.contact(), s.contact()
            s.value(ann, "city", "string", "Hamburg")
            s.value(bob, "city", "string", "Berlin")
            evaluate_segments(conn, configured, now=NOW, scoring=SCORING)
        with conn.begin():
            report = evaluate_segments(
                conn, configured, now=NOW + timedelta(minutes=1), scoring=SCORING, contact_ids=[ann]
            )
            assert report.segments[0].mode == "contacts" and report.transitions == 0
        with conn.begin():
            # A run over a few contacts keeps its scratch tables; plant rows a careless run could reuse.
            conn.execute(insert(_SCOPE).values(contact_id=bob))
            conn.execute(insert(_NEW).values(contact_id=bob))
            conn.execute(insert(_SCORE_NEW).values(contact_id=bob, score=99.0))
            conn.execute(insert(_SCORE_CHANGED).values(contact_id=bob))
            # And a change a contacts run must not see: bob is not among its contacts.
            Seeder(conn).value(bob, "city", "string", "Hamburg")
        with conn.begin():
            Seeder(conn).value(cy, "city", "string", "Hamburg")
            later = NOW + timedelta(minutes=2)
            report = evaluate_segments(conn, configured, now=later, scoring=SCORING, contact_ids=[cy])
            assert (report.segments[0].entered_examples, report.segments[0].left) == ([cy], 0)
            assert report.scores_changed == 1
        with conn.begin():
            assert _members(conn, "hamburg") == {ann, cy}
            assert stored_scores(conn) == {ann: 5.0, bob: 0.0, cy: 5.0}
            # A full run from scratch finds only bob's unseen change left to do.
            report = evaluate_segments(conn, configured, now=later, scoring=SCORING, full=True)
            assert (report.transitions, report.segments[0].entered_examples) == (1, [bob])
            assert report.scores_changed == 1


def test_a_kept_plan_rebinds_now_for_windows_and_anniversaries(engine: Engine) -> None:
    raw = {
        "power": {"name": "Power", "all": [{"event": "app.used", "count": {"gte": 2}, "within": "7d"}]},
        "birthday": {"name": "Birthday", "all": [{"field": "birthday", "op": "anniversary"}]},
        "recent": {"name": "Recent", "all": [{"event": "app.used", "last": {"within_last": "2d"}}]},
    }
    configured = segments_from(raw)
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.event(ann, "app.used", NOW - timedelta(days=1))
        s.event(ann, "app.used", NOW - timedelta(days=3))
        s.value(ann, "birthday", "date", datetime(1990, 3, 18, tzinfo=UTC))
        evaluate_segments(conn, configured, now=NOW)
        assert (_members(conn, "power"), _members(conn, "birthday"), _members(conn, "recent")) == (
            {ann},
            set(),
            {ann},
        )
        # The first run over these contacts builds the plans; the next ones reuse them at a later `now`.
        evaluate_segments(conn, configured, now=NOW + timedelta(minutes=1), contact_ids=[ann])
        report = evaluate_segments(conn, configured, now=NOW + timedelta(days=3), contact_ids=[ann])
        moved = {(r.key, r.entered, r.left) for r in report.segments if r.entered or r.left}
        assert moved == {("birthday", 1, 0), ("recent", 0, 1)}
        report = evaluate_segments(
            conn, configured, now=NOW + timedelta(days=4, seconds=1), contact_ids=[ann]
        )
        moved = {(r.key, r.entered, r.left) for r in report.segments if r.entered or r.left}
        assert moved == {("birthday", 0, 1), ("power", 0, 1)}
        kinds = conn.execute(select(transitions.c.kind, func.count()).group_by(transitions.c.kind)).tuples()
        assert dict(kinds.all()) == {"entered": 3, "left": 3}


def test_clock_params_give_what_compiling_at_that_time_gives(engine: Engine) -> None:
    rules = [
        {"event": "app.used", "within": "2d"},
        {"event": "app.used", "first": {"more_than_ago": "3d"}},
        {"event": "app.used", "last": {"within_last": "1d"}},
        {"field": "birthday", "op": "anniversary", "within_days": 2},
        {"field": "created_at", "op": "within_last", "value": "5d"},
        {"field": "created_at", "op": "more_than_ago", "value": "5d"},
    ]
    with engine.connect() as conn, conn.begin() as trans:
        s = Seeder(conn)
        ids = [s.contact(at=NOW - timedelta(days=d)) for d in range(8)]
        for d, cid in enumerate(ids):
            s.event(cid, "app.used", NOW - timedelta(days=d, hours=1))
            s.value(cid, "birthday", "date", datetime(1990, 3, 14 + d, tzinfo=UTC))
        catalog = load_catalog(conn)
        for correlated in (True, False):
            for raw in rules:
                rule = Rule.model_validate(raw)
                built = RuleCompiler(catalog, now=NOW, dialect=conn.dialect.name, correlated=correlated)
                test = built.compile(rule)
                query = select(contacts.c.id).select_from(built.source()).where(test)
                for later in (NOW + timedelta(hours=20), NOW + timedelta(days=3)):
                    fresh = RuleCompiler(catalog, now=later, dialect=conn.dialect.name, correlated=correlated)
                    test = fresh.compile(rule)
                    expected = set(
                        conn.execute(select(contacts.c.id).select_from(fresh.source()).where(test)).scalars()
                    )
                    got = set(conn.execute(query, clock_params(built.clock, later)).scalars())
                    assert got == expected, (raw, correlated, later)
        trans.rollback()


def test_a_plan_built_before_its_field_existed_is_not_reused_after(engine: Engine) -> None:
    # A key of its own: plans are kept per process, and another test's plan could know the field.
    configured = segments_from({"late_city": CITY["hamburg"]})
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        evaluate_segments(conn, configured, now=NOW)
        # No contact has a city yet, so this run's plan compiles the condition to false.
        evaluate_segments(conn, configured, now=NOW + timedelta(minutes=1), contact_ids=[ann])
        s.value(ann, "city", "string", "Hamburg")
        report = evaluate_segments(conn, configured, now=NOW + timedelta(minutes=2), contact_ids=[ann])
        assert report.segments[0].entered_examples == [ann]


def test_kept_scoring_statements_rebind_now_for_decay_and_windows(engine: Engine) -> None:
    scoring = ScoringConfig.model_validate(
        {"half_life": "10d", "events": [{"event": "invoice.paid", "points": 10, "within": "30d"}]}
    )
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.event(ann, "invoice.paid", NOW - timedelta(days=1))
        evaluate_segments(conn, {}, now=NOW, scoring=scoring)
        seen = []
        # The first run over these contacts builds the statements; the later ones reuse them.
        for later in (timedelta(minutes=1), timedelta(days=15), timedelta(days=40)):
            evaluate_segments(conn, {}, now=NOW + later, scoring=scoring, contact_ids=[ann])
            seen.append(stored_scores(conn)[ann])
        assert seen == [10.0, 5.0, 0.0]
