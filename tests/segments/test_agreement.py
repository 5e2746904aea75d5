"""Property test: the SQL evaluator (both strategies) and the Python evaluator always agree."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from sync.segments import Rule, RuleCompiler, SegmentConfig, evaluate_segments, load_catalog
from sync.segments.config import FIELD_OPS
from sync.segments.explain import Explainer, load_contact
from sync.store.tables import contacts, memberships
from tests.segments.conftest import NOW, Seeder

FIELDS = {"city": "string", "age": "integer", "vip": "boolean", "birthday": "date", "signup": "datetime"}
DURATIONS = ["1h", "3d", "7d", "30d"]
# Offsets hit the window edges exactly (7 days, 3 days, 1 hour) as well as ordinary points, past and future.
OFFSETS = [
    timedelta(0),
    timedelta(hours=1),
    timedelta(days=3),
    timedelta(days=7),
    timedelta(days=7, seconds=1),
    timedelta(days=2, hours=5),
    timedelta(days=29),
    timedelta(days=45),
    timedelta(days=-1),
]
TEXTS = ["Hamburg", "hamburg", "Ham", "burg", "", "O'Brien", "x'; DROP TABLE contacts; --", "Zürich 🏙️", "%_"]

moments = st.sampled_from(OFFSETS).map(lambda d: NOW - d)
texts = st.sampled_from(TEXTS)
numbers = st.sampled_from([0, 1, 17, 18, 50, 65.5, -3])
literals = st.one_of(
    texts, numbers, st.booleans(), st.sampled_from(["2026-03-08T12:00:00+00:00", "2025-01-01"])
)


@st.composite
def field_rules(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from([*FIELDS, "ghost", "created_at", "last_activity_at", "email"]))
    op = draw(st.sampled_from(FIELD_OPS))
    rule: dict[str, Any] = {"field": name, "op": op}
    if op in ("in", "not_in"):
        rule["value"] = draw(st.lists(literals, min_size=1, max_size=3))
    elif op == "between":
        rule["value"] = draw(
            # Low to high: a range from high to low is refused when the file is read.
            st.one_of(
                st.lists(numbers, min_size=2, max_size=2).map(sorted), st.just(["2026-03-01", "2026-03-16"])
            )
        )
    elif op in ("before", "after"):
        rule["value"] = draw(st.sampled_from(["2026-03-08T12:00:00+00:00", "2025-06-01", "2026-03-15"]))
    elif op in ("within_last", "more_than_ago"):
        rule["value"] = draw(st.sampled_from(DURATIONS))
    elif op == "anniversary":
        rule["within_days"] = draw(st.sampled_from([0, 7, 300]))
    elif op not in ("exists", "missing"):
        rule["value"] = draw(literals)
    return rule


@st.composite
def event_rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"event": draw(st.sampled_from(["app.used", "invoice.paid"]))}
    if draw(st.booleans()):
        rule["within"] = draw(st.sampled_from(DURATIONS))
    if draw(st.integers(0, 3)) == 0:
        rule["where"] = {"plan": draw(st.sampled_from(["pro", "5", "free", 5, True, "true"]))}
    if draw(st.integers(0, 4)) == 0:
        rule["performed"] = False
        return rule
    if draw(st.booleans()):
        op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]))
        # `lt = 0` is refused: no count is below 0.
        rule["count"] = {op: draw(st.integers(1 if op == "lt" else 0, 3))}
    for which in ("first", "last"):
        if draw(st.integers(0, 3)) == 0:
            test = draw(st.sampled_from(["before", "after", "within_last", "more_than_ago"]))
            value = "2026-03-10" if test in ("before", "after") else draw(st.sampled_from(DURATIONS))
            rule[which] = {test: value}
    return rule


leaves = st.one_of(
    field_rules(),
    event_rules(),
    st.sampled_from(
        [{"consent": "sms"}, {"in_segment": "base"}, {"lead_score": {"gte": 10}}, {"lead_score": {"lt": 5}}]
    ),
)
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, kids),
    ),
    max_leaves=6,
)


def _value(type_: str, draw: st.DrawFn) -> Any:
    if type_ == "string":
        return draw(texts)
    if type_ == "integer":
        return draw(st.sampled_from([0, 17, 18, 50, -3]))
    if type_ == "boolean":
        return draw(st.booleans())
    if type_ == "date":
        day = draw(
            st.sampled_from([date(1990, 3, 15), date(1985, 3, 20), date(2000, 12, 1), date(2026, 3, 9)])
        )
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return draw(moments)


@st.composite
def people(draw: st.DrawFn) -> list[dict[str, Any]]:
    result = []
    for _ in range(draw(st.integers(1, 5))):
        person: dict[str, Any] = {
            "state": draw(st.sampled_from(["active", "active", "dormant", "merged"])),
            "last_activity_at": draw(st.one_of(st.none(), moments)),
            "fields": {n: _value(t, draw) for n, t in FIELDS.items() if draw(st.booleans())},
            "score": draw(st.one_of(st.none(), st.sampled_from([0.0, 4.5, 10.0, 12.0]))),
            "email": draw(st.one_of(st.none(), st.sampled_from(["ham@example.com", "o'brien@example.com"]))),
            "events": draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(["app.used", "invoice.paid", "other"]),
                        moments,
                        st.sampled_from(
                            [{}, {"plan": "pro"}, {"plan": 5}, {"plan": "5"}, {"plan": 5.0}, {"plan": True}]
                        ),
                    ),
                    max_size=5,
                )
            ),
            "consents": draw(
                st.lists(
                    st.tuples(st.sampled_from(["opted_in", "opted_out", "unknown"]), moments), max_size=3
                )
            ),
        }
        result.append(person)
    return result


def _seed(seeder: Seeder, crowd: list[dict[str, Any]]) -> list[int]:
    ids = []
    for person in crowd:
        cid = seeder.contact(state=person["state"], last_activity_at=person["last_activity_at"])
        for name, value in person["fields"].items():
            seeder.value(cid, name, FIELDS[name], value)
        if person["score"] is not None:
            seeder.value(cid, "lead_score", "decimal", person["score"])
        if person["email"]:
            seeder.email(cid, f"{cid}{person['email']}")
        for name, at, props in person["events"]:
            seeder.event(cid, name, at, **props)
        for status, at in person["consents"]:
            seeder.consent(cid, "sms", status, at)
        ids.append(cid)
    return ids


BASE = SegmentConfig.model_validate(
    {"name": "base", "any": [{"field": "city", "op": "starts_with", "value": "Ham"}]}
)


# Checked on every run, not only when Hypothesis draws them: each window's edges, to the second.
EDGE = NOW - timedelta(days=7)
EDGE_CROWD: list[dict[str, Any]] = [
    {
        "state": "active",
        "last_activity_at": at,
        "fields": {"signup": at},
        "score": None,
        "email": None,
        "events": [("app.used", at, {})],
        "consents": [],
    }
    for at in (EDGE, EDGE - timedelta(seconds=1), NOW + timedelta(hours=1))
]
EDGE_RULES: list[dict[str, Any]] = [
    {"field": "last_activity_at", "op": "within_last", "value": "7d"},
    {"field": "signup", "op": "within_last", "value": "7d"},
    {"field": "signup", "op": "more_than_ago", "value": "7d"},
    {"field": "signup", "op": "before", "value": EDGE.isoformat()},
    {"field": "signup", "op": "after", "value": EDGE.isoformat()},
    {"event": "app.used", "within": "7d"},
    {"event": "app.used", "first": {"before": EDGE.isoformat()}},
    {"event": "app.used", "first": {"within_last": "7d"}},
    {"event": "app.used", "last": {"more_than_ago": "7d"}},
    {"event": "app.used", "last": {"after": EDGE.isoformat()}},
]


def test_sql_and_python_evaluators_agree(engine: Engine) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(crowd=people(), raw=trees, consent=st.sampled_from([None, "sms"]))
    def check(crowd: list[dict[str, Any]], raw: dict[str, Any], consent: str | None) -> None:
        rule = Rule.model_validate(raw)
        probe = SegmentConfig(name="probe", all=[rule], requires_consent=consent)
        configured = {"base": BASE, "probe": probe}
        with engine.connect() as conn, conn.begin() as trans:
            seeder = Seeder(conn)
            for name, type_ in FIELDS.items():
                seeder.field(name, type_)
            ids = _seed(seeder, crowd)
            report = evaluate_segments(conn, configured, now=NOW)
            catalog = load_catalog(conn)
            by_sql = []
            # IN (subquery), correlated, and correlated with windowed events scanned (SQLite's full runs).
            dialect = conn.dialect.name
            for correlated, scan in ((False, False), (True, False), (True, True)):
                compiler = RuleCompiler(catalog, now=NOW, dialect=dialect, correlated=correlated, scan=scan)
                test = compiler.compile(rule)
                found = conn.execute(
                    select(contacts.c.id).select_from(compiler.source()).where(contacts.c.id.in_(ids), test)
                )
                by_sql.append(sorted(found.scalars()))
            by_python, members = [], []
            for cid in ids:
                data = load_contact(conn, cid)
                assert data is not None
                explainer = Explainer(configured, data, now=NOW)
                if explainer.rule(rule).result:
                    by_python.append(cid)
                if explainer.segment("probe").result:
                    members.append(cid)
            probe_id = next(r.segment_id for r in report.segments if r.key == "probe")
            stored = conn.execute(
                select(memberships.c.contact_id).where(memberships.c.segment_id == probe_id)
            )
            assert sorted(stored.scalars()) == members, f"memberships disagree with explain for {raw}"
            trans.rollback()
        assert by_sql[0] == by_python, f"set-based SQL disagrees with Python for {raw}"
        assert by_sql[1] == by_python, f"correlated SQL disagrees with Python for {raw}"
        assert by_sql[2] == by_python, f"correlated SQL with scanned fields disagrees with Python for {raw}"

    for raw in EDGE_RULES:
        check = example(crowd=EDGE_CROWD, raw=raw, consent=None)(check)
    check()
