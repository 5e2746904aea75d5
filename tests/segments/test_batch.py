"""A run over given contacts (`contact_ids`) tests every segment in one pass, with the set-based outcome."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from sync.segments import evaluate_segments
from sync.store.tables import contacts, memberships, outbox, segments, transitions
from tests.segments.conftest import NOW, Seeder, segments_from

RULES: dict[str, Any] = {
    "hamburg": {"name": "Hamburg", "all": [{"field": "city", "op": "eq", "value": "Hamburg"}]},
    "sms_hamburg": {"name": "Hamburg by SMS", "requires_consent": "sms", "all": [{"in_segment": "hamburg"}]},
    "elsewhere": {"name": "Not Hamburg", "all": [{"not": {"in_segment": "hamburg"}}]},
    "older": {
        "name": "Over 40",
        "all": [{"field": "age", "op": "gt", "value": 40}],
        "split": {"a": 50, "b": 50},
    },
    "active": {"name": "Active", "all": [{"event": "app.used", "count": {"gte": 2}, "within": "7d"}]},
    "never_paid": {"name": "Never paid", "all": [{"event": "invoice.paid", "performed": False}]},
    "either": {
        "name": "Young or paying",
        "any": [
            {"field": "age", "op": "lt", "value": 25},
            {"event": "invoice.paid", "where": {"plan": "pro"}},
        ],
    },
}


def _history(conn: Connection) -> list[tuple[Any, ...]]:
    t = transitions.c
    query = (
        select(segments.c.key, t.contact_id, t.kind, t.reason, t.variant, t.contact_seq)
        .join(segments, segments.c.id == t.segment_id)
        .order_by(t.id)
    )
    return [tuple(r) for r in conn.execute(query)]


def _memberships(conn: Connection) -> set[tuple[Any, ...]]:
    m = memberships.c
    query = select(segments.c.key, m.contact_id, m.variant).join(segments, segments.c.id == m.segment_id)
    return {tuple(r) for r in conn.execute(query)}


def test_a_contact_enters_a_segment_and_those_naming_it_in_one_run(engine: Engine) -> None:
    configured = segments_from(RULES)
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.value(ann, "city", "string", "Berlin")
        s.value(ann, "age", "integer", 30)
        s.consent(ann, "sms", "opted_in", NOW - timedelta(days=2))
        evaluate_segments(conn, configured, now=NOW)
        before = len(_history(conn))
        s.value(ann, "city", "string", "Hamburg")
        report = evaluate_segments(conn, configured, now=NOW + timedelta(hours=1), contact_ids=[ann])
        moved = _history(conn)[before:]
        modes = {r.key: r.mode for r in report.segments}
    # sms_hamburg and elsewhere see the new hamburg membership although the pass writes it only at its end.
    assert {row[:5] for row in moved} == {
        ("hamburg", ann, "entered", "rule", None),
        ("sms_hamburg", ann, "entered", "rule", None),
        ("elsewhere", ann, "left", "rule", None),
    }
    assert [row[5] for row in moved] == [3, 4, 5]
    assert set(modes.values()) == {"contacts"}


def test_leavers_keep_the_variant_they_held_and_say_why_they_left(engine: Engine) -> None:
    configured = segments_from(RULES)
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob = s.contact(), s.contact()
        for who in (ann, bob):
            s.value(who, "city", "string", "Hamburg")
            s.value(who, "age", "integer", 50)
            s.consent(who, "sms", "opted_in", NOW - timedelta(days=2))
        evaluate_segments(conn, configured, now=NOW)
        # A variant given under an earlier split: the leaving transition carries what was held.
        conn.execute(update(memberships).where(memberships.c.contact_id == ann).values(variant="old"))
        before = len(_history(conn))
        conn.execute(update(contacts).where(contacts.c.id == ann).values(state="merged"))
        s.consent(bob, "sms", "opted_out", NOW - timedelta(hours=1))
        evaluate_segments(conn, configured, now=NOW + timedelta(hours=1), contact_ids=[ann, bob])
        moved = _history(conn)[before:]
        outboxed = set(conn.execute(select(outbox.c.transition_id)).scalars())
        ids = set(conn.execute(select(transitions.c.id)).scalars())
        seqs = dict(conn.execute(select(contacts.c.id, contacts.c.transition_seq)).tuples().all())
    assert {(key, who, kind, reason, variant) for key, who, kind, reason, variant, _ in moved} == {
        ("hamburg", ann, "left", "merged", "old"),
        ("sms_hamburg", ann, "left", "merged", "old"),
        ("older", ann, "left", "merged", "old"),
        ("never_paid", ann, "left", "merged", "old"),
        ("sms_hamburg", bob, "left", "unsubscribed", None),
    }
    assert outboxed == ids
    for who in (ann, bob):
        assert seqs[who] == max(row[5] for row in moved if row[1] == who)


def _seed_people(s: Seeder, rng: random.Random, n: int) -> list[int]:
    people = []
    for _ in range(n):
        who = s.contact(state=rng.choice(["active", "active", "active", "merged"]))
        if rng.random() < 0.8:
            s.value(who, "city", "string", rng.choice(["Hamburg", "Berlin", "Lyon"]))
        if rng.random() < 0.8:
            s.value(who, "age", "integer", rng.randint(18, 70))
        for _ in range(rng.randint(0, 4)):
            s.event(who, "app.used", NOW - timedelta(days=rng.randint(0, 10)))
        if rng.random() < 0.4:
            s.event(
                who,
                "invoice.paid",
                NOW - timedelta(days=rng.randint(0, 30)),
                plan=rng.choice(["pro", "free"]),
            )
        if rng.random() < 0.6:
            s.consent(
                who, "sms", rng.choice(["opted_in", "opted_out"]), NOW - timedelta(days=rng.randint(1, 9))
            )
        people.append(who)
    return people


def _change_some(s: Seeder, rng: random.Random, people: list[int]) -> None:
    for who in rng.sample(people, len(people) // 2):
        s.value(who, "city", "string", rng.choice(["Hamburg", "Berlin"]))
        s.value(who, "age", "integer", rng.randint(18, 70))
        if rng.random() < 0.5:
            s.event(who, "app.used", NOW + timedelta(minutes=10))
            s.event(who, "app.used", NOW + timedelta(minutes=20))
        if rng.random() < 0.3:
            s.consent(who, "sms", rng.choice(["opted_in", "opted_out"]), NOW + timedelta(minutes=5))


def test_one_pass_over_contacts_agrees_with_evaluating_segment_by_segment(engine: Engine) -> None:
    configured = segments_from(RULES)
    later = NOW + timedelta(hours=1)
    for seed in range(3):
        with engine.connect() as conn, conn.begin() as trans:
            s = Seeder(conn)
            people = _seed_people(s, random.Random(seed), 40)
            evaluate_segments(conn, configured, now=NOW)
            before = len(_history(conn))
            _change_some(s, random.Random(seed + 100), people)
            outcomes = []
            # contact_ids takes the one-pass path; full=True re-evaluates every segment set-based.
            for ids in (people, None):
                attempt = conn.begin_nested()
                evaluate_segments(conn, configured, now=later, contact_ids=ids, full=ids is None)
                outcomes.append((_memberships(conn), sorted(_history(conn)[before:])))
                attempt.rollback()
            trans.rollback()
        assert outcomes[0] == outcomes[1], f"seed {seed}"
