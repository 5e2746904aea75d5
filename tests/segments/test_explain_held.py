"""Explain answers a held segment, and `in_segment` tests of it, from its stored members, as the sync does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from sync.segments import evaluate_segments
from sync.segments.explain import Explainer, load_contact
from sync.store.tables import memberships, segments
from tests.segments.conftest import NOW, Seeder, segments_from

LATER = NOW + timedelta(hours=1)


def _pair(test: dict[str, Any]) -> dict[str, Any]:
    return {
        "pro": {"name": "Pro", "all": [{"field": "plan", **test}]},
        "pro_fans": {"name": "Fans", "all": [{"in_segment": "pro"}]},
    }


def _members(conn: Connection, key: str) -> set[int]:
    sid = select(segments.c.id).where(segments.c.key == key).scalar_subquery()
    return set(
        conn.execute(select(memberships.c.contact_id).where(memberships.c.segment_id == sid)).scalars()
    )


def test_explain_reads_a_held_segment_from_its_stored_members(engine: Engine) -> None:
    # `plan` is text: `gt 5` can never hold, so the sync keeps the members the old rule gave.
    mistyped = segments_from(_pair({"op": "gt", "value": 5}))
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob = s.contact(), s.contact()
        s.value(ann, "plan", "string", "pro")
        s.value(bob, "plan", "string", "basic")
        evaluate_segments(conn, segments_from(_pair({"op": "eq", "value": "pro"})), now=NOW, declared=set())
        report = evaluate_segments(conn, mistyped, now=LATER, declared=set())
        assert list(report.held) == ["pro"]
        assert _members(conn, "pro") == _members(conn, "pro_fans") == {ann}
        people = {cid: load_contact(conn, cid) for cid in (ann, bob)}
    for cid, data in people.items():
        assert data is not None
        explainer = Explainer(mistyped, data, now=LATER)
        held = explainer.segment("pro")
        assert held.result is (cid == ann)
        [why] = held.children
        assert why.label == (
            'held: segments.pro.all[0]: "gt" does not apply to plan, a string field (text values); '
            "members kept as they were"
        )
        fans = explainer.segment("pro_fans")
        assert fans.result is (cid == ann)
        assert fans.children[1].children[0].label == "in_segment pro"
        assert fans.children[1].children[0].children == [held]


def test_explain_takes_the_held_segments_the_sync_reports(engine: Engine) -> None:
    # A field no mapping rule declares holds the segment too; only the caller knows the mapping rules.
    typo = segments_from(
        _pair({"op": "eq", "value": "pro"})
        | {"pro": {"name": "Pro", "all": [{"field": "plann", "op": "eq", "value": "pro"}]}}
    )
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.value(ann, "plan", "string", "pro")
        evaluate_segments(conn, segments_from(_pair({"op": "eq", "value": "pro"})), now=NOW, declared=set())
        report = evaluate_segments(conn, typo, now=LATER, declared=set())
        data = load_contact(conn, ann)
    assert data is not None
    assert Explainer(typo, data, now=LATER).segment("pro").result is False  # evaluated: no `plann`
    explained = Explainer(typo, data, now=LATER, held=report.held).segment("pro_fans")
    assert explained.result is True
    assert (
        explained.children[1]
        .children[0]
        .children[0]
        .children[0]
        .label.startswith('held: segments.pro.all[0].field: unknown field "plann"')
    )
