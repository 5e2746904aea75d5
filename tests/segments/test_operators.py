"""Each operator and condition kind picks the right contacts, on both backends and both SQL strategies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from sync.segments import Rule, RuleCompiler, SegmentConfig, evaluate_segments, load_catalog
from sync.segments.explain import Explainer, load_contact
from sync.segments.values import anniversary_days
from sync.store.tables import contacts
from tests.segments.conftest import NOW, Seeder

HOSTILE = "x'); DELETE FROM contacts; --\"\\ ü 🏙️ " + "z" * 5000


@pytest.fixture
def world(engine: Engine) -> Iterator[tuple[Connection, dict[str, int]]]:
    """Four contacts with known data; rolled back afterwards."""
    with engine.connect() as conn, conn.begin() as trans:
        s = Seeder(conn)
        ann = s.contact(last_activity_at=NOW - timedelta(days=40))
        bob = s.contact(last_activity_at=NOW - timedelta(days=2))
        cy = s.contact()
        hostile = s.contact()
        s.field("plan", "enum")
        for cid, city, age, vip, birthday in (
            (ann, "Hamburg", 51, True, datetime(1980, 3, 15, tzinfo=UTC)),
            (bob, "Hamburg-Altona", 30, False, datetime(1990, 3, 20, tzinfo=UTC)),
            (cy, "Berlin", 50, None, None),
        ):
            s.value(cid, "city", "string", city)
            s.value(cid, "age", "integer", age)
            if vip is not None:
                s.value(cid, "vip", "boolean", vip)
            if birthday is not None:
                s.value(cid, "birthday", "date", birthday)
        s.value(hostile, "city", "string", HOSTILE)
        s.email(ann, "ann@example.com")
        s.email(bob, "bob@corp.test")
        for days in (1, 2, 3, 4, 5):
            s.event(ann, "app.used", NOW - timedelta(days=days), plan="pro")
        s.event(bob, "app.used", NOW - timedelta(days=8), plan="free")
        s.event(bob, "checkout.started", NOW - timedelta(hours=5))
        s.event(cy, "checkout.started", NOW - timedelta(hours=5))
        s.event(cy, "invoice.paid", NOW - timedelta(hours=1), note=HOSTILE)
        s.consent(ann, "sms", "opted_in", NOW - timedelta(days=3))
        s.consent(bob, "sms", "opted_in", NOW - timedelta(days=3))
        s.consent(bob, "sms", "opted_out", NOW - timedelta(days=1))
        yield conn, {"ann": ann, "bob": bob, "cy": cy, "hostile": hostile}
        trans.rollback()


def _match(conn: Connection, names: dict[str, int], raw: dict[str, Any]) -> set[str]:
    rule = Rule.model_validate(raw)
    catalog = load_catalog(conn)
    answers = []
    for correlated in (False, True):
        compiler = RuleCompiler(catalog, now=NOW, dialect=conn.dialect.name, correlated=correlated)
        test = compiler.compile(rule)
        ids = set(conn.execute(select(contacts.c.id).select_from(compiler.source()).where(test)).scalars())
        answers.append({n for n, i in names.items() if i in ids})
    python = set()
    for name, cid in names.items():
        data = load_contact(conn, cid)
        assert data is not None
        if Explainer({}, data, now=NOW).rule(rule).result:
            python.add(name)
    assert answers[0] == answers[1] == python
    return python


CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"field": "city", "op": "eq", "value": "Hamburg"}, {"ann"}),
    ({"field": "city", "op": "ne", "value": "Hamburg"}, {"bob", "cy", "hostile"}),
    ({"field": "city", "op": "in", "value": ["Berlin", "Hamburg"]}, {"ann", "cy"}),
    ({"field": "city", "op": "not_in", "value": ["Berlin", "Hamburg"]}, {"bob", "hostile"}),
    ({"field": "city", "op": "contains", "value": "burg"}, {"ann", "bob"}),
    ({"field": "city", "op": "contains", "value": "BURG"}, set()),
    ({"field": "city", "op": "starts_with", "value": "Hamburg"}, {"ann", "bob"}),
    ({"field": "city", "op": "ends_with", "value": "lin"}, {"cy"}),
    ({"field": "age", "op": "gt", "value": 50}, {"ann"}),
    ({"field": "age", "op": "gte", "value": 50}, {"ann", "cy"}),
    ({"field": "age", "op": "lt", "value": 50}, {"bob"}),
    ({"field": "age", "op": "lte", "value": 50}, {"bob", "cy"}),
    ({"field": "age", "op": "between", "value": [30, 50]}, {"bob", "cy"}),
    ({"field": "age", "op": "eq", "value": "not a number"}, set()),
    ({"field": "vip", "op": "eq", "value": True}, {"ann"}),
    ({"field": "vip", "op": "exists"}, {"ann", "bob"}),
    ({"field": "vip", "op": "missing"}, {"cy", "hostile"}),
    ({"field": "plan", "op": "missing"}, {"ann", "bob", "cy", "hostile"}),
    ({"field": "never_written", "op": "missing"}, {"ann", "bob", "cy", "hostile"}),
    ({"field": "never_written", "op": "eq", "value": 1}, set()),
    ({"field": "birthday", "op": "before", "value": "1985-01-01"}, {"ann"}),
    ({"field": "birthday", "op": "after", "value": "1985-01-01"}, {"bob"}),
    ({"field": "birthday", "op": "anniversary"}, {"ann"}),
    ({"field": "birthday", "op": "anniversary", "within_days": 6}, {"ann", "bob"}),
    ({"field": "last_activity_at", "op": "more_than_ago", "value": "30d"}, {"ann"}),
    ({"field": "last_activity_at", "op": "within_last", "value": "7d"}, {"bob"}),
    ({"field": "email", "op": "ends_with", "value": "@example.com"}, {"ann"}),
    ({"field": "email", "op": "ends_with", "value": "@Example.COM"}, {"ann"}),  # stored lower case
    ({"event": "app.used", "count": {"gte": 5}, "within": "7d"}, {"ann"}),
    ({"event": "app.used", "count": {"lt": 5}, "within": "7d"}, {"bob", "cy", "hostile"}),
    ({"event": "app.used", "within": "7d"}, {"ann"}),
    ({"event": "app.used"}, {"ann", "bob"}),
    ({"event": "app.used", "performed": False}, {"cy", "hostile"}),
    ({"event": "app.used", "where": {"plan": "free"}}, {"bob"}),
    ({"event": "app.used", "last": {"more_than_ago": "7d"}}, {"bob"}),
    ({"event": "app.used", "first": {"within_last": "7d"}}, {"ann"}),
    ({"event": "invoice.paid", "where": {"note": HOSTILE[:100]}}, set()),
    ({"consent": "sms"}, {"ann"}),
    ({"lead_score": {"lt": 1}}, {"ann", "bob", "cy", "hostile"}),
    ({"field": "city", "op": "eq", "value": HOSTILE}, {"hostile"}),
    ({"field": "city", "op": "contains", "value": "'); DELETE"}, {"hostile"}),
    ({"field": "city", "op": "in", "value": ["%", "_", "Ham%"]}, set()),
    # Nesting: all/any/not to several levels.
    (
        {
            "any": [
                {
                    "all": [
                        {"field": "city", "op": "starts_with", "value": "Ham"},
                        {"not": {"consent": "sms"}},
                    ]
                },
                {"not": {"any": [{"field": "age", "op": "exists"}, {"event": "checkout.started"}]}},
            ]
        },
        {"bob", "hostile"},
    ),
    # Abandoned checkout: started more than 3 hours ago, no payment since.
    (
        {
            "all": [
                {"event": "checkout.started", "within": "2d", "last": {"more_than_ago": "3h"}},
                {"event": "invoice.paid", "within": "2d", "performed": False},
            ]
        },
        {"bob"},
    ),
]


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_operator(world: tuple[Connection, dict[str, int]], raw: dict[str, Any], expected: set[str]) -> None:
    conn, names = world
    assert _match(conn, names, raw) == expected


# A week before NOW, to the second: the edge of every 7-day window below.
EDGE = NOW - timedelta(days=7)


@pytest.fixture
def edges(engine: Engine) -> Iterator[tuple[Connection, dict[str, int]]]:
    """Contacts active, with an `app.used`, at EDGE, a second before and an hour ahead; "spread" at all."""
    with engine.connect() as conn, conn.begin() as trans:
        s = Seeder(conn)
        moments = {"edge": EDGE, "past": EDGE - timedelta(seconds=1), "future": NOW + timedelta(hours=1)}
        names = {}
        for name, at in moments.items():
            names[name] = cid = s.contact(last_activity_at=at)
            s.event(cid, "app.used", at)
        names["spread"] = spread = s.contact(last_activity_at=NOW - timedelta(days=1))
        for at in (*moments.values(), NOW - timedelta(days=1)):
            s.event(spread, "app.used", at)
        yield conn, names
        trans.rollback()


# A window includes both its ends (now - d and now) and nothing ahead of now; `more_than_ago`,
# `before` and `after` exclude the exact moment, for fields and for first/last occurrences alike.
# "spread" (active a day ago) has occurrences in the window, its first before it, its last ahead of now.
EDGE_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"field": "last_activity_at", "op": "within_last", "value": "7d"}, {"edge", "spread"}),
    ({"field": "last_activity_at", "op": "more_than_ago", "value": "7d"}, {"past"}),
    ({"field": "last_activity_at", "op": "before", "value": EDGE.isoformat()}, {"past"}),
    ({"field": "last_activity_at", "op": "after", "value": EDGE.isoformat()}, {"future", "spread"}),
    ({"event": "app.used", "within": "7d"}, {"edge", "spread"}),
    ({"event": "app.used", "within": "7d", "performed": False}, {"past", "future"}),
    ({"event": "app.used", "first": {"before": EDGE.isoformat()}}, {"past", "spread"}),
    ({"event": "app.used", "first": {"more_than_ago": "7d"}}, {"past", "spread"}),
    ({"event": "app.used", "first": {"after": EDGE.isoformat()}}, {"future"}),
    ({"event": "app.used", "first": {"within_last": "7d"}}, {"edge"}),
    ({"event": "app.used", "last": {"before": EDGE.isoformat()}}, {"past"}),
    ({"event": "app.used", "last": {"more_than_ago": "7d"}}, {"past"}),
    ({"event": "app.used", "last": {"after": EDGE.isoformat()}}, {"future", "spread"}),
    ({"event": "app.used", "last": {"within_last": "7d"}}, {"edge"}),
]


@pytest.mark.parametrize(("raw", "expected"), EDGE_CASES, ids=[str(i) for i in range(len(EDGE_CASES))])
def test_time_window_edges(
    edges: tuple[Connection, dict[str, int]], raw: dict[str, Any], expected: set[str]
) -> None:
    conn, names = edges
    assert _match(conn, names, raw) == expected


def test_hostile_values_are_data_and_tables_survive(world: tuple[Connection, dict[str, int]]) -> None:
    conn, names = world
    segment = SegmentConfig.model_validate(
        {
            "name": HOSTILE[:200],
            "description": HOSTILE,
            "all": [{"field": "city", "op": "eq", "value": HOSTILE}],
        }
    )
    report = evaluate_segments(conn, {"hostile_values": segment}, now=NOW)
    assert report.segments[0].entered_examples == [names["hostile"]]
    assert conn.execute(select(contacts.c.id)).scalars().all()


@pytest.mark.parametrize(
    ("today", "within", "leap_birthday"),
    [
        ("2026-02-28", 0, True),
        ("2026-03-01", 0, False),
        ("2028-02-28", 0, False),
        ("2028-02-29", 0, True),
        ("2026-02-25", 6, True),
    ],
)
def test_a_29_february_anniversary_comes_round_on_the_28th_in_a_common_year(
    today: str, within: int, leap_birthday: bool
) -> None:
    now = datetime.fromisoformat(today).replace(hour=9, tzinfo=UTC)
    assert (229 in anniversary_days(now, within)) is leap_birthday
