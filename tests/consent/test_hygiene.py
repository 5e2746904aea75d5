"""Hygiene policies: dormancy segments can exclude, invalid numbers flagged, bounces; plan versus run."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import TypeAdapter
from sqlalchemy import Connection, Engine, insert, select, update

from sync.consent import Feedback, apply_feedback
from sync.hygiene import HygieneConfig, last_run, plan, run_hygiene
from sync.identity import merge
from sync.privacy import contact_export
from sync.segments import SegmentsConfig, evaluate_segments
from sync.store import write_transaction
from sync.store.tables import contact_identities, contacts, suppressions
from tests.consent.conftest import NOW, members

REACHABLE = TypeAdapter(SegmentsConfig).validate_python(
    {
        "reachable": {
            "name": "Reachable",
            "all": [
                {"field": "email", "op": "exists"},
                {"not": {"field": "dormant", "op": "eq", "value": True}},
            ],
        }
    }
)


def _contact(conn: Connection, email: str, *, active_at: datetime, phone: str | None = None) -> int:
    cid = int(
        conn.execute(
            insert(contacts)
            .values(
                created_at=active_at, updated_at=active_at, changed_at=active_at, last_activity_at=active_at
            )
            .returning(contacts.c.id)
        ).scalar_one()
    )
    ids = [("email", email)] + ([("phone", phone)] if phone else [])
    for kind, value in ids:
        row = {"contact_id": cid, "kind": kind, "value": value, "source": "test", "first_seen_at": active_at}
        conn.execute(insert(contact_identities).values(**row))
    return cid


def _policies(conn: Connection, config: HygieneConfig, now: datetime) -> dict[str, int]:
    return {p.policy: p.would for p in plan(conn, config, now=now)}


def test_a_quiet_contact_turns_dormant_leaves_segments_excluding_it_and_comes_back(engine: Engine) -> None:
    config = HygieneConfig()
    with write_transaction(engine) as conn:
        quiet = _contact(conn, "quiet@example.com", active_at=NOW - timedelta(days=200))
        busy = _contact(conn, "busy@example.com", active_at=NOW - timedelta(days=20))
        evaluate_segments(conn, REACHABLE, now=NOW)
        assert members(conn, "reachable") == {quiet, busy}
        assert _policies(conn, config, NOW)["dormant"] == 1
        results = {r.policy: r.did for r in run_hygiene(conn, config, now=NOW)}
        assert results["dormant"] == 1
        evaluate_segments(conn, REACHABLE, now=NOW)
        assert members(conn, "reachable") == {busy}
        assert conn.execute(select(contacts.c.state).where(contacts.c.id == quiet)).scalar_one() == "dormant"
        assert _policies(conn, config, NOW)["dormant"] == 0  # done: a second run changes nothing

    later = NOW + timedelta(days=1)
    with write_transaction(engine) as conn:
        conn.execute(update(contacts).where(contacts.c.id == quiet).values(last_activity_at=later))
        assert _policies(conn, config, later)["revived"] == 1
        run_hygiene(conn, config, now=later)
        evaluate_segments(conn, REACHABLE, now=later)
        assert members(conn, "reachable") == {quiet, busy}
        previous = last_run(conn)
    assert previous is not None and {p["policy"]: p["did"] for p in previous["policies"]}["revived"] == 1


def test_bounces_and_invalid_numbers_are_flagged_and_suppressed(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        cid = _contact(conn, "ann@example.com", active_at=NOW, phone="+14155550000")
        other = _contact(conn, "bob@example.com", active_at=NOW, phone="+14155550001")
        conn.execute(
            update(contact_identities)
            .where(contact_identities.c.contact_id == other, contact_identities.c.kind == "phone")
            .values(valid=False)
        )
        for kind, given in (
            ("contact.bounced", {"email": "ANN@example.com"}),
            ("contact.invalid_number", {"phone": "(415) 555-0000"}),
        ):
            body = {"type": kind, "timestamp": "2026-11-23T11:00:00Z", "data": {"contact_id": cid, **given}}
            apply_feedback(
                conn, Feedback.model_validate(body), endpoint="mailer", channel=None, now=NOW, evaluate=None
            )
        data = contact_export(conn, cid)
        assert data["fields"] == {"email_deliverable": False, "phone_valid": False}
        assert {i["kind"]: i["valid"] for i in data["identities"]} == {"email": False, "phone": False}
        reasons = set(conn.execute(select(suppressions.c.reason)).scalars())
        assert reasons == {"bounced", "invalid_number"}
        # Bob's number was found invalid elsewhere: the policy flags it, Ann is already flagged.
        assert _policies(conn, HygieneConfig(), NOW)["invalid_phones"] == 1
        run_hygiene(conn, HygieneConfig(), now=NOW)
        assert contact_export(conn, other)["fields"] == {"phone_valid": False}


def test_an_invalid_number_report_flags_the_line_whatever_extensions_it_is_held_with(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        cid = _contact(conn, "ann@example.com", active_at=NOW, phone="+14155550000;ext=12")
        body = {
            "type": "contact.invalid_number",
            "timestamp": "2026-11-23T11:00:00Z",
            "data": {"contact_id": cid, "phone": "(415) 555-0000"},
        }
        apply_feedback(
            conn, Feedback.model_validate(body), endpoint="texter", channel=None, now=NOW, evaluate=None
        )
        held = {i["kind"]: (i["value"], i["valid"]) for i in contact_export(conn, cid)["identities"]}
    assert held["phone"] == ("+14155550000;ext=12", False)


def test_a_flag_of_an_unreachable_identity_goes_once_a_valid_one_arrives(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        cid = _contact(conn, "ann@example.com", active_at=NOW, phone="+14155550000")
        for kind, given in (
            ("contact.bounced", {"email": "ann@example.com"}),
            ("contact.invalid_number", {"phone": "+14155550000"}),
        ):
            body = {"type": kind, "timestamp": "2026-11-23T11:00:00Z", "data": {"contact_id": cid, **given}}
            apply_feedback(
                conn, Feedback.model_validate(body), endpoint="mailer", channel=None, now=NOW, evaluate=None
            )
        run_hygiene(conn, HygieneConfig(), now=NOW)
        assert contact_export(conn, cid)["fields"] == {"email_deliverable": False, "phone_valid": False}
        # A source brings a new address: the person can be reached again by e-mail, not by phone.
        row = {
            "contact_id": cid,
            "kind": "email",
            "value": "ann@new.example",
            "source": "test",
            "first_seen_at": NOW,
        }
        conn.execute(insert(contact_identities).values(**row))
        assert {
            p: n for p, n in _policies(conn, HygieneConfig(), NOW).items() if p.startswith("reachable")
        } == {
            "reachable_phone": 0,
            "reachable_email": 1,
        }
        done = {r.policy: r.did for r in run_hygiene(conn, HygieneConfig(), now=NOW)}
        assert (done["reachable_email"], done["reachable_phone"]) == (1, 0)
        assert contact_export(conn, cid)["fields"] == {"phone_valid": False}
        assert _policies(conn, HygieneConfig(), NOW)["reachable_email"] == 0  # done: nothing left to do


def test_a_merge_keeps_the_later_activity_and_the_active_state_of_either_half(engine: Engine) -> None:
    config = HygieneConfig()
    with write_transaction(engine) as conn:
        dormant_kept = _contact(conn, "old@example.com", active_at=NOW - timedelta(days=400))
        active_merged = _contact(conn, "new@example.com", active_at=NOW - timedelta(days=2))
        active_kept = _contact(conn, "ann@example.com", active_at=NOW - timedelta(days=3))
        dormant_merged = _contact(conn, "ann@old.example", active_at=NOW - timedelta(days=500))
        for cid in (dormant_kept, dormant_merged):  # last active over a year ago: they turn dormant
            conn.execute(update(contacts).where(contacts.c.id == cid).values(last_activity_at=None))
        run_hygiene(conn, config, now=NOW)
        merge(conn, keep=dormant_kept, others=[active_merged], reason="test", now=NOW)
        merge(conn, keep=active_kept, others=[dormant_merged], reason="test", now=NOW)
        held = {
            cid: (state, last)
            for cid, state, last in conn.execute(
                select(contacts.c.id, contacts.c.state, contacts.c.last_activity_at)
            )
        }
        assert held == {
            dormant_kept: ("active", NOW - timedelta(days=2)),
            active_kept: ("active", NOW - timedelta(days=3)),
        }
        for cid in (dormant_kept, active_kept):
            assert "dormant" not in contact_export(conn, cid)["fields"], cid
        assert _policies(conn, config, NOW)["dormant"] == 0


@pytest.mark.parametrize(
    "kept_is_older_activity", [True, False], ids=["kept-quiet-longer", "kept-active-later"]
)
def test_a_merge_keeps_the_later_of_two_activities_whichever_contact_is_kept(
    engine: Engine, kept_is_older_activity: bool
) -> None:
    with write_transaction(engine) as conn:
        longer_ago = _contact(conn, "ann@old.example", active_at=NOW - timedelta(days=40))
        lately = _contact(conn, "ann@example.com", active_at=NOW - timedelta(days=2))
        keep, other = (longer_ago, lately) if kept_is_older_activity else (lately, longer_ago)
        merge(conn, keep=keep, others=[other], reason="test", now=NOW)
        kept = conn.execute(select(contacts.c.last_activity_at).where(contacts.c.id == keep)).scalar_one()
    assert kept == NOW - timedelta(days=2)
