"""Membership, transitions and outbox: set-based, incremental where it can be, in the caller's transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, insert, select, update

from sync.identity import merge
from sync.segments import SegmentConfig, evaluate_segments
from sync.store.tables import contacts, deliveries, memberships, outbox, segments, sync_runs, transitions
from tests.segments.conftest import NOW, Seeder, segments_from

CITY = {"hamburg": {"name": "Hamburg", "all": [{"field": "city", "op": "eq", "value": "Hamburg"}]}}
POWER = {"power": {"name": "Power", "all": [{"event": "app.used", "count": {"gte": 2}, "within": "7d"}]}}


def _transitions(conn: Connection) -> list[tuple[Any, ...]]:
    t = transitions.c
    rows = conn.execute(
        select(segments.c.key, t.contact_id, t.kind, t.reason, t.contact_seq, t.variant, t.run_id)
        .join(segments, segments.c.id == t.segment_id)
        .order_by(t.id)
    )
    return [tuple(r) for r in rows]


def _members(conn: Connection, key: str) -> set[int]:
    sid = select(segments.c.id).where(segments.c.key == key).scalar_subquery()
    return set(
        conn.execute(select(memberships.c.contact_id).where(memberships.c.segment_id == sid)).scalars()
    )


def test_transitions_and_outbox_are_written_together(engine: Engine) -> None:
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob = s.contact(), s.contact()
        s.value(ann, "city", "string", "Hamburg")
        for days in (1, 2):
            s.event(ann, "app.used", NOW - timedelta(days=days))
            s.event(bob, "app.used", NOW - timedelta(days=days))
        run = conn.execute(
            insert(sync_runs)
            .values(trigger="manual", status="running", started_at=NOW)
            .returning(sync_runs.c.id)
        ).scalar_one()
        report = evaluate_segments(conn, segments_from(CITY | POWER), now=NOW, run_id=run)
    assert report.transitions == 3
    with engine.connect() as conn:
        assert _transitions(conn) == [
            ("hamburg", ann, "entered", "backfill", 1, None, run),
            ("power", ann, "entered", "backfill", 2, None, run),
            ("power", bob, "entered", "backfill", 1, None, run),
        ]
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 3
        joined = select(func.count()).select_from(
            outbox.join(transitions, transitions.c.id == outbox.c.transition_id)
        )
        assert conn.execute(joined).scalar_one() == 3
        assert dict(conn.execute(select(contacts.c.id, contacts.c.transition_seq)).tuples().all()) == {
            ann: 2,
            bob: 1,
        }


def test_nothing_is_written_when_the_caller_rolls_back(engine: Engine) -> None:
    with engine.begin() as conn:
        s = Seeder(conn)
        s.value(s.contact(), "city", "string", "Hamburg")
    with engine.connect() as conn:
        trans = conn.begin()
        assert evaluate_segments(conn, segments_from(CITY), now=NOW).transitions == 1
        trans.rollback()
    with engine.connect() as conn:
        for table in (segments, memberships, transitions, outbox):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0
        assert conn.execute(select(contacts.c.transition_seq)).scalar_one() == 0
    with engine.begin() as conn:  # and a later run still works, its scratch tables having gone too
        assert evaluate_segments(conn, segments_from(CITY), now=NOW).transitions == 1


def test_time_window_exit_with_a_later_now_and_no_new_data(engine: Engine) -> None:
    configured = segments_from(POWER)
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.event(ann, "app.used", NOW - timedelta(days=1))
        s.event(ann, "app.used", NOW - timedelta(days=3))
        evaluate_segments(conn, configured, now=NOW)
        assert _members(conn, "power") == {ann}
        evaluate_segments(conn, configured, now=NOW + timedelta(days=3, hours=23))
        assert _members(conn, "power") == {ann}
        report = evaluate_segments(conn, configured, now=NOW + timedelta(days=4, seconds=1))
        assert report.segments[0].mode == "full"
        assert _members(conn, "power") == set()
        assert _transitions(conn)[-1] == ("power", ann, "left", "rule", 2, None, None)


def test_incremental_run_only_looks_at_changed_contacts(engine: Engine) -> None:
    configured = segments_from(CITY)
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob = s.contact(at=NOW - timedelta(hours=1)), s.contact(at=NOW - timedelta(hours=1))
        s.value(ann, "city", "string", "Hamburg")
        s.value(bob, "city", "string", "Berlin")
        evaluate_segments(conn, configured, now=NOW)
        # Data changed behind the engine's back (changed_at not bumped): an incremental run does not see it.
        s.overwrite("city", "Hamburg")
        later = NOW + timedelta(hours=1)
        report = evaluate_segments(conn, configured, now=later)
        assert report.segments[0].mode == "incremental" and _members(conn, "hamburg") == {ann}
        conn.execute(
            update(contacts).where(contacts.c.id == bob).values(changed_at=later + timedelta(minutes=1))
        )
        report = evaluate_segments(conn, configured, now=later + timedelta(minutes=2))
        assert (report.segments[0].entered, _members(conn, "hamburg")) == (1, {ann, bob})


def test_a_new_rule_version_is_evaluated_in_full(engine: Engine) -> None:
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.value(ann, "city", "string", "Berlin")
        evaluate_segments(conn, segments_from(CITY), now=NOW)
        changed = {
            "hamburg": {
                "name": "Hamburg",
                "all": [{"field": "city", "op": "in", "value": ["Hamburg", "Berlin"]}],
            }
        }
        report = evaluate_segments(conn, segments_from(changed), now=NOW + timedelta(hours=1))
        assert (report.segments[0].mode, report.segments[0].entered) == ("full", 1)
        assert _transitions(conn)[-1][3] == "rule"


def test_merged_contacts_leave_and_opt_outs_leave_as_unsubscribed(engine: Engine) -> None:
    configured = segments_from({"sms": CITY["hamburg"] | {"requires_consent": "sms"}})
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob, cy = s.contact(), s.contact(), s.contact()
        for cid in (ann, bob, cy):
            s.value(cid, "city", "string", "Hamburg")
        s.consent(ann, "sms", "opted_in", NOW - timedelta(days=1))
        s.consent(bob, "sms", "opted_in", NOW - timedelta(days=1))
        evaluate_segments(conn, configured, now=NOW)
        assert _members(conn, "sms") == {ann, bob}
        later = NOW + timedelta(hours=1)
        s.consent(ann, "sms", "opted_out", later)
        conn.execute(update(contacts).where(contacts.c.id.in_([ann, bob])).values(changed_at=later))
        conn.execute(update(contacts).where(contacts.c.id == bob).values(state="merged"))
        evaluate_segments(conn, configured, now=later)
        assert _members(conn, "sms") == set()
        assert {(r[1], r[3]) for r in _transitions(conn) if r[2] == "left"} == {
            (ann, "unsubscribed"),
            (bob, "merged"),
        }


def test_contact_ids_mode_evaluates_only_those_contacts(engine: Engine) -> None:
    configured = segments_from(CITY)
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob = s.contact(), s.contact()
        evaluate_segments(conn, configured, now=NOW)
        for cid in (ann, bob):
            s.value(cid, "city", "string", "Hamburg")
        report = evaluate_segments(conn, configured, now=NOW + timedelta(minutes=1), contact_ids=[bob])
        assert report.segments[0].mode == "contacts" and _members(conn, "hamburg") == {bob}
        stamp = conn.execute(select(segments.c.last_evaluated_at)).scalar_one()
        assert stamp == NOW  # left alone, so a regular run still picks up every change


def test_in_segment_follows_its_dependency_within_one_run(engine: Engine) -> None:
    raw = CITY | {"not_hamburg": {"name": "Elsewhere", "not": {"in_segment": "hamburg"}}}
    configured = segments_from(raw)
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.value(ann, "city", "string", "Hamburg")
        evaluate_segments(conn, configured, now=NOW)
        assert _members(conn, "not_hamburg") == set()
        s.overwrite("city", "Bremen")
        later = NOW + timedelta(hours=1)
        conn.execute(update(contacts).values(changed_at=later))
        evaluate_segments(conn, configured, now=later)
        assert _members(conn, "hamburg") == set() and _members(conn, "not_hamburg") == {ann}


def test_segments_are_stored_with_rule_version_and_time_dependency(engine: Engine) -> None:
    with engine.begin() as conn:
        evaluate_segments(conn, segments_from(CITY | POWER), now=NOW)
        rows = {r.key: r for r in conn.execute(select(segments))}
    assert rows["power"].depends_on_time and not rows["hamburg"].depends_on_time
    assert rows["hamburg"].rule["all"][0]["value"] == "Hamburg" and len(rows["hamburg"].rule_version) == 16
    assert rows["hamburg"].last_evaluated_at == NOW


def test_evaluation_refuses_a_naive_now(engine: Engine) -> None:
    with engine.begin() as conn, pytest.raises(ValueError, match="aware"):
        evaluate_segments(
            conn, {"x": SegmentConfig.model_validate(CITY["hamburg"])}, now=NOW.replace(tzinfo=None)
        )


def test_a_merge_keeps_the_person_in_a_segment_once_and_cancels_the_repeated_entry(engine: Engine) -> None:
    configured = segments_from(CITY)
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, ann_again, bob, bob_again = s.contact(), s.contact(), s.contact(), s.contact()
        for cid in (ann, ann_again, bob_again):
            s.value(cid, "city", "string", "Hamburg")
        evaluate_segments(conn, configured, now=NOW)
        assert _members(conn, "hamburg") == {ann, ann_again, bob_again}
        later = NOW + timedelta(hours=1)
        # Both of Ann's contacts were announced (not yet fanned out); only Bob's second one was.
        merge(conn, keep=ann, others=[ann_again], reason="shared identity", now=later)
        merge(conn, keep=bob, others=[bob_again], reason="shared identity", now=later)
        assert _members(conn, "hamburg") == {ann, bob}
        pending = conn.execute(
            select(transitions.c.contact_id)
            .join(outbox, outbox.c.transition_id == transitions.c.id)
            .where(outbox.c.dispatched_at.is_(None))
        )
        # Ann's second entry is dropped; Bob's one entry will go out, now under his kept contact.
        assert sorted(pending.scalars()) == sorted([ann, bob])
        entries = [(r[1], r[2]) for r in _transitions(conn)]
        assert sorted(entries) == sorted([(ann, "entered"), (bob, "entered")])
        # The next evaluation keeps Bob (he has the merged city) without a second `entered`.
        before = len(_transitions(conn))
        evaluate_segments(conn, configured, now=later)
        assert len(_transitions(conn)) == before and _members(conn, "hamburg") == {ann, bob}


def test_a_merge_cancels_the_open_deliveries_of_a_repeated_entry_already_fanned_out(engine: Engine) -> None:
    configured = segments_from(CITY)
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, ann_again = s.contact(), s.contact()
        for cid in (ann, ann_again):
            s.value(cid, "city", "string", "Hamburg")
        evaluate_segments(conn, configured, now=NOW)
        conn.execute(update(outbox).values(dispatched_at=NOW))
        entries = conn.execute(select(transitions.c.id, transitions.c.contact_id)).all()
        conn.execute(
            insert(deliveries),
            [
                {
                    "transition_id": tid,
                    "endpoint": "sms",
                    "webhook_id": f"msg_{cid}",
                    "status": "pending",
                    "next_attempt_at": NOW,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for tid, cid in entries
            ],
        )
        merge(conn, keep=ann, others=[ann_again], reason="shared identity", now=NOW + timedelta(hours=1))
        d = deliveries.c
        rows = conn.execute(select(d.webhook_id, d.status, d.reason, d.next_attempt_at)).all()
        assert _members(conn, "hamburg") == {ann}
    why = f"contact {ann_again} was merged into contact {ann}, already in the segment"
    assert {webhook_id: rest for webhook_id, *rest in rows} == {
        f"msg_{ann}": ["pending", None, NOW],
        f"msg_{ann_again}": ["cancelled", why, None],
    }


def test_a_merged_contacts_transitions_are_numbered_after_the_kept_ones(engine: Engine) -> None:
    two = segments_from(
        CITY | {"berlin": {"name": "Berlin", "all": [{"field": "town", "op": "eq", "value": "B"}]}}
    )
    with engine.begin() as conn:
        s = Seeder(conn)
        ann, ann_again = s.contact(), s.contact()
        s.value(ann, "city", "string", "Hamburg")
        s.value(ann_again, "town", "string", "B")
        s.value(ann_again, "city", "string", "Hamburg")
        evaluate_segments(conn, two, now=NOW)  # ann: seq 1; ann_again: seq 1 and 2
        merge(conn, keep=ann, others=[ann_again], reason="shared identity", now=NOW + timedelta(hours=1))
        s.value(ann, "city", "string", "Kiel")
        evaluate_segments(conn, two, now=NOW + timedelta(hours=2))  # ann leaves hamburg
        numbers = sorted(
            ((key, kind, seq) for key, cid, kind, _, seq, *_ in _transitions(conn) if cid == ann),
            key=lambda row: row[2],
        )
    # Ann's own entry, the merged contact's Berlin entry (its repeated Hamburg one was dropped), then
    # the `left`: each number once, the `left` above everything a consumer may have applied.
    assert [(key, kind) for key, kind, _ in numbers] == [
        ("hamburg", "entered"),
        ("berlin", "entered"),
        ("hamburg", "left"),
    ]
    seqs = [seq for *_, seq in numbers]
    assert len(set(seqs)) == 3 and seqs[0] == 1 and seqs[-1] == max(seqs) == 4


def test_a_segment_on_a_field_nobody_declared_or_sent_is_held_with_its_members(engine: Engine) -> None:
    typo = {"hamburg": {"name": "Hamburg", "all": [{"field": "cty", "op": "eq", "value": "Hamburg"}]}}
    declared = {"later": {"name": "Later", "all": [{"field": "nps", "op": "exists"}]}}
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.value(ann, "city", "string", "Hamburg")
        evaluate_segments(conn, segments_from(CITY), now=NOW)
        before = _transitions(conn)
        report = evaluate_segments(
            conn, segments_from(typo | declared), now=NOW + timedelta(hours=1), declared={"nps"}
        )
        assert _members(conn, "hamburg") == {ann} and _transitions(conn) == before
    assert list(report.held) == ["hamburg"]
    assert report.held["hamburg"] == [
        'segments.hamburg.all[0].field: unknown field "cty"; did you mean "city"?'
    ]
    assert [r.key for r in report.segments] == ["later"]  # a field a mapping rule declares is evaluated


def test_a_test_its_fields_type_cannot_meet_holds_the_segment(engine: Engine) -> None:
    def rule(op: str, value: Any) -> dict[str, Any]:
        return {"name": op, "all": [{"field": "mrr", "op": op, "value": value}]}

    configured = {"nine": rule("gte", "nine"), "has_9": rule("contains", "9"), "fine": rule("gte", 5)}
    with engine.begin() as conn:
        s = Seeder(conn)
        ann = s.contact()
        s.value(ann, "mrr", "decimal", 9.5)
        report = evaluate_segments(conn, segments_from(configured), now=NOW, declared=set())
        assert _members(conn, "fine") == {ann}
    assert report.held == {
        "has_9": ['segments.has_9.all[0]: "contains" does not apply to mrr, a decimal field (number values)'],
        "nine": ["segments.nine.all[0]: 'nine' is not a number, as mrr (decimal) holds: it matches nothing"],
    }


@pytest.mark.parametrize("mode", ["incremental", "contacts"])
def test_a_segment_naming_a_held_one_reads_its_members_as_they_were(engine: Engine, mode: str) -> None:
    def pair(field: str) -> dict[str, Any]:
        return {
            "pro": {"name": "Pro", "all": [{"field": field, "op": "eq", "value": "pro"}]},
            "pro_fans": {"name": "Fans", "all": [{"in_segment": "pro"}]},
        }

    with engine.begin() as conn:
        s = Seeder(conn)
        ann, bob = s.contact(), s.contact()
        for cid in (ann, bob):
            s.value(cid, "plan", "string", "pro")
        evaluate_segments(conn, segments_from(pair("plan")), now=NOW, declared=set())
        later = NOW + timedelta(hours=1)
        ids = [ann] if mode == "contacts" else None
        report = evaluate_segments(
            conn, segments_from(pair("plann")), now=later, declared=set(), contact_ids=ids
        )
        assert _members(conn, "pro") == _members(conn, "pro_fans") == {ann, bob}
    assert list(report.held) == ["pro"]
    assert [(r.key, r.entered, r.left) for r in report.segments] == [("pro_fans", 0, 0)]


def test_a_rule_change_run_for_given_contacts_also_renews_the_segments_naming_it(engine: Engine) -> None:
    def pair(plan: str) -> dict[str, Any]:
        return {
            "b": {"name": "B", "all": [{"field": "plan", "op": "eq", "value": plan}]},
            "a": {"name": "A", "all": [{"in_segment": "b"}]},
        }

    with engine.begin() as conn:
        s = Seeder(conn)
        pro, basic = s.contact(), s.contact()
        s.value(pro, "plan", "string", "pro")
        s.value(basic, "plan", "string", "basic")
        evaluate_segments(conn, segments_from(pair("pro")), now=NOW)
        # A webhook about `pro` is the first evaluation after the rule changed to "basic".
        evaluate_segments(conn, segments_from(pair("basic")), now=NOW + timedelta(hours=1), contact_ids=[pro])
        assert _members(conn, "b") == _members(conn, "a") == {basic}
