"""Event `where` tests match string, boolean and number properties, each only by its own JSON type."""

from __future__ import annotations

import tomllib
from datetime import timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, select

from sync.segments import Rule, RuleCompiler, evaluate_segments, load_catalog
from sync.segments.explain import Explainer, load_contact
from sync.store.tables import contacts
from tests.segments.conftest import NOW, Seeder, segments_from


def _rule(where: str) -> Rule:
    return Rule.model_validate(tomllib.loads(f'rule = {{ event = "track", where = {where} }}')["rule"])


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("{ trial = true }", {"ann"}),
        ("{ trial = false }", {"cy"}),
        ('{ trial = "true" }', {"bob"}),
        ("{ trial = 1 }", set()),  # 1 is not true
        ("{ seats = 3 }", {"ann", "cy"}),  # 3 is 3.0
        ("{ seats = 3.0 }", {"ann", "cy"}),
        ('{ seats = "3" }', {"bob"}),
        ("{ seats = 0 }", {"dee"}),  # 0 is not false
        ("{ ratio = 0.25 }", {"ann"}),
        ("{ trial = true, seats = 3 }", {"ann"}),
    ],
)
def test_where_matches_booleans_and_numbers_by_json_type(
    engine: Engine, where: str, expected: set[str]
) -> None:
    rule = _rule(where)
    with engine.connect() as conn, conn.begin() as trans:
        s = Seeder(conn)
        names = {name: s.contact() for name in ("ann", "bob", "cy", "dee")}
        at = NOW - timedelta(hours=1)
        # As a Segment.com `track` carries them, and as a form tool sends everything: as text.
        s.event(names["ann"], "track", at, trial=True, seats=3, ratio=0.25)
        s.event(names["bob"], "track", at, trial="true", seats="3")
        s.event(names["cy"], "track", at, trial=False, seats=3.0)
        s.event(names["dee"], "track", at, trial=None, seats=0)
        catalog, dialect = load_catalog(conn), conn.dialect.name
        for correlated in (False, True):
            compiler = RuleCompiler(catalog, now=NOW, dialect=dialect, correlated=correlated)
            found = set(conn.execute(select(contacts.c.id).where(compiler.compile(rule))).scalars())
            assert {n for n, cid in names.items() if cid in found} == expected, (where, correlated)
        explained = set()
        for name, cid in names.items():
            data = load_contact(conn, cid)
            assert data is not None
            if Explainer({}, data, now=NOW).rule(rule).result:
                explained.add(name)
        assert explained == expected
        configured = segments_from({"trial": {"name": "Trial", "all": [rule.model_dump(exclude_none=True)]}})
        [result] = evaluate_segments(conn, configured, now=NOW).segments
        assert result.entered == len(expected)
        trans.rollback()


def test_where_refuses_tables_lists_and_infinities() -> None:
    for where in ("{ plan = { a = 1 } }", "{ seats = [1, 2] }", "{ ratio = inf }", "{ ratio = nan }"):
        with pytest.raises(ValidationError):
            _rule(where)
