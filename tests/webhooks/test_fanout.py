"""Outbox -> deliveries: one per (transition, endpoint), filtering, caps, consent and suppression."""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, func, insert, select, update

from sync.identity import merge
from sync.store.tables import consent_records, contact_identities, deliveries, outbox, suppressions
from tests.webhooks.conftest import T0, add_contact, add_segment, add_transition, endpoint, make_config, seed
from webhooks import WebhooksConfig, fan_out
from webhooks.eligibility import NO_ENTRY, SUPPRESSED
from webhooks.fanout import FanoutStats, TransitionRow, decide_deliveries, fan_out_batch


def _deliveries(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(deliveries).order_by(deliveries.c.id)).mappings()]


def test_one_delivery_per_transition_and_endpoint_with_dispatched_outbox(engine: Engine) -> None:
    seed(engine, 3)
    config = make_config(("sms", endpoint("sms")), ("mail", endpoint("mail")))
    stats = fan_out(engine, config, T0, batch_size=2)
    assert (stats.outbox_rows, stats.deliveries) == (3, 6)
    assert fan_out(engine, config, T0).deliveries == 0  # dispatched rows are not fanned out twice
    rows = _deliveries(engine)
    assert len({r["webhook_id"] for r in rows}) == 6
    assert {r["status"] for r in rows} == {"pending"}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).where(outbox.c.dispatched_at.is_(None))).scalar_one() == 0


def test_endpoints_get_only_the_events_and_segments_they_want(engine: Engine) -> None:
    with engine.begin() as conn:
        vip, churn = add_segment(conn, "vip"), add_segment(conn, "churn")
        contact = add_contact(conn)
        add_transition(conn, vip, contact, "entered")
        add_transition(conn, churn, contact, "entered")
        add_transition(conn, vip, contact, "left")
    config = make_config(
        ("vip_only", endpoint("vip_only", segments=["vip"])),
        ("entries", endpoint("entries", events=["segment.entered"])),
    )
    fan_out(engine, config, T0)
    by_endpoint: dict[str, int] = {}
    for row in _deliveries(engine):
        by_endpoint[str(row["endpoint"])] = by_endpoint.get(str(row["endpoint"]), 0) + 1
    assert by_endpoint == {"vip_only": 2, "entries": 2}


def test_a_rolled_back_transition_leaves_no_outbox_row_and_no_delivery(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        sid = add_segment(conn)
        add_transition(conn, sid, add_contact(conn))
        raise RuntimeError("segment evaluation failed after writing")
    fan_out(engine, make_config(("sms", endpoint("sms"))), T0)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar_one() == 0
    assert _deliveries(engine) == []


def test_a_cap_suppresses_entries_over_it_with_the_reason_but_never_exits(engine: Engine) -> None:
    with engine.begin() as conn:
        contact = add_contact(conn)
        sids = [add_segment(conn, f"s{i}") for i in range(5)]
        for sid in sids:
            add_transition(conn, sid, contact, "entered")
        add_transition(conn, sids[0], contact, "left")
    config = make_config(("sms", endpoint("sms", cap="3 per 7d")))
    stats = fan_out(engine, config, T0)
    rows = _deliveries(engine)
    assert [r["status"] for r in rows].count("pending") == 4  # three entries and the exit
    suppressed = [r for r in rows if r["status"] == "suppressed"]
    assert len(suppressed) == 2 and all(r["reason"] == "cap: 3 per 7d reached" for r in suppressed)
    assert stats.suppressed == {"cap": 2}


def _sent(engine: Engine, at: datetime) -> None:
    """Every open delivery succeeded at `at`, as the worker records it."""
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.status.in_(("pending", "failed")))
            .values(
                status="succeeded",
                attempts=deliveries.c.attempts + 1,
                next_attempt_at=None,
                reason=None,
                updated_at=at,
            )
        )


def test_the_cap_window_slides(engine: Engine) -> None:
    config = make_config(("sms", endpoint("sms", cap="1 per 1d")))
    with engine.begin() as conn:
        contact, sid = add_contact(conn), add_segment(conn)
        add_transition(conn, sid, contact)
    fan_out(engine, config, T0)
    _sent(engine, T0)
    with engine.begin() as conn:
        add_transition(conn, add_segment(conn, "later"), contact, now=T0 + timedelta(hours=2))
    fan_out(engine, config, T0 + timedelta(hours=2))
    with engine.begin() as conn:
        add_transition(conn, add_segment(conn, "next_day"), contact, now=T0 + timedelta(days=1, hours=1))
    fan_out(engine, config, T0 + timedelta(days=1, hours=1))
    assert [r["status"] for r in _deliveries(engine)] == ["succeeded", "suppressed", "pending"]


def test_an_entry_still_retrying_counts_against_the_cap_whatever_its_age(engine: Engine) -> None:
    # The endpoint is down for two days: the day-0 entry is still retrying when the day-2 one comes,
    # and both would reach the person the second it recovers.
    config = make_config(("sms", endpoint("sms", cap="1 per 1d")))
    with engine.begin() as conn:
        contact = add_contact(conn)
        add_transition(conn, add_segment(conn, "day0"), contact)
    fan_out(engine, config, T0)
    with engine.begin() as conn:
        conn.execute(update(deliveries).values(status="failed", attempts=8, reason="HTTP 503"))
    day2 = T0 + timedelta(days=2)
    with engine.begin() as conn:
        add_transition(conn, add_segment(conn, "day2"), contact, now=day2)
    stats = fan_out(engine, config, day2)
    assert stats.suppressed == {"cap": 1}
    # It is sent when the endpoint recovers: the window runs from then, not from when it was made.
    _sent(engine, day2 + timedelta(hours=1))
    for hours, key in ((20, "day2_later"), (26, "day3")):
        with engine.begin() as conn:
            add_transition(conn, add_segment(conn, key), contact, now=day2 + timedelta(hours=hours))
        fan_out(engine, config, day2 + timedelta(hours=hours))
    rows = _deliveries(engine)
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("succeeded", None),
        ("suppressed", "cap: 1 per 1d reached"),
        ("suppressed", "cap: 1 per 1d reached"),
        ("pending", None),
    ]


@pytest.mark.parametrize(
    ("status", "updated_at"),
    [
        ("succeeded", T0),  # sent within the window
        ("dead", T0),  # given up within the window: its attempts may have reached the person
        ("failed", T0 - timedelta(days=3)),  # still to be retried, whatever its age
        ("leased", T0 - timedelta(days=3)),  # being sent now, whatever its age
    ],
)
def test_an_entry_sent_given_up_or_still_to_be_sent_counts_against_the_cap(
    engine: Engine, status: str, updated_at: datetime
) -> None:
    config = make_config(("sms", endpoint("sms", cap="1 per 1d")))
    with engine.begin() as conn:
        contact = add_contact(conn)
        add_transition(conn, add_segment(conn, "vip"), contact)
    fan_out(engine, config, T0)
    with engine.begin() as conn:
        conn.execute(update(deliveries).values(status=status, attempts=1, updated_at=updated_at))
    later = T0 + timedelta(hours=2)
    with engine.begin() as conn:
        add_transition(conn, add_segment(conn, "churn"), contact, now=later)
    fan_out(engine, config, later)
    second = _deliveries(engine)[1]
    assert (second["status"], second["reason"]) == ("suppressed", "cap: 1 per 1d reached")


@pytest.mark.parametrize(
    ("age", "status"),
    [(timedelta(days=1), "pending"), (timedelta(days=1) - timedelta(seconds=1), "suppressed")],
    ids=["one window old", "just inside"],
)
def test_an_entry_sent_one_window_ago_no_longer_counts(engine: Engine, age: timedelta, status: str) -> None:
    config = make_config(("sms", endpoint("sms", cap="1 per 1d")))
    with engine.begin() as conn:
        contact = add_contact(conn)
        add_transition(conn, add_segment(conn, "vip"), contact)
    fan_out(engine, config, T0)
    _sent(engine, T0)
    with engine.begin() as conn:
        add_transition(conn, add_segment(conn, "churn"), contact, now=T0 + age)
    fan_out(engine, config, T0 + age)
    assert _deliveries(engine)[1]["status"] == status


def test_a_left_does_not_count_against_the_cap(engine: Engine) -> None:
    config = make_config(("sms", endpoint("sms", cap="1 per 1d")))
    earlier = T0 - timedelta(days=2)
    with engine.begin() as conn:
        contact, vip = add_contact(conn), add_segment(conn, "vip")
        add_transition(conn, vip, contact, now=earlier)
    fan_out(engine, config, earlier)
    _sent(engine, earlier)
    with engine.begin() as conn:
        add_transition(conn, vip, contact, "left")
    fan_out(engine, config, T0)  # the left is queued: it tells the endpoint to stop, it is no message
    later = T0 + timedelta(hours=1)
    with engine.begin() as conn:
        add_transition(conn, add_segment(conn, "churn"), contact, now=later)
    fan_out(engine, config, later)
    assert [r["status"] for r in _deliveries(engine)] == ["succeeded", "pending", "pending"]


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_fan_outs_at_once_count_each_others_deliveries_against_the_cap(engine: Engine) -> None:
    # SQLite's write lock already makes writers take turns; PostgreSQL's do not without asking.
    config = make_config(("sms", endpoint("sms", cap="1 per 1d")))
    with engine.begin() as conn:
        contact = add_contact(conn)
        for key in ("vip", "churn"):
            add_transition(conn, add_segment(conn, key), contact)
    second: list[FanoutStats] = []
    with engine.begin() as conn:
        first = fan_out_batch(conn, config, T0, batch_size=1)  # uncommitted: the other cannot see it
        other = threading.Thread(target=lambda: second.append(fan_out(engine, config, T0, batch_size=1)))
        other.start()
        other.join(timeout=1.0)
        waited = other.is_alive()  # it must queue for the cap until this transaction commits
    other.join(timeout=30)
    assert waited and not other.is_alive()
    assert (first.deliveries, dict(first.suppressed), dict(second[0].suppressed)) == (1, {}, {"cap": 1})
    assert sorted(str(r["status"]) for r in _deliveries(engine)) == ["pending", "suppressed"]


def test_consent_and_suppression_stop_entries_only(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn)
        opted_in, opted_out, never_asked, listed, mail_listed = (
            add_contact(conn, f"{n}@example.com") for n in "abcde"
        )
        conn.execute(
            insert(contact_identities).values(
                contact_id=listed, kind="phone", value="+14155552671", source="test", first_seen_at=T0
            )
        )
        for cid, status, at in [
            (opted_in, "opted_out", T0 - timedelta(days=2)),
            (opted_in, "opted_in", T0 - timedelta(days=1)),
            (opted_out, "opted_in", T0 - timedelta(days=2)),
            (opted_out, "opted_out", T0 - timedelta(days=1)),
            (listed, "opted_in", T0 - timedelta(days=1)),
            (mail_listed, "opted_in", T0 - timedelta(days=1)),
        ]:
            conn.execute(
                insert(consent_records).values(
                    contact_id=cid, channel="sms", status=status, source="test", proof={}, recorded_at=at
                )
            )
        for kind, value in (("phone", b"+14155552671"), ("email", b"e@example.com")):
            conn.execute(
                insert(suppressions).values(
                    kind=kind, value_hash=hashlib.sha256(value).hexdigest(), reason="opt-out", created_at=T0
                )
            )
        for cid in (opted_in, opted_out, never_asked, listed, mail_listed):
            add_transition(conn, sid, cid, "entered")
        add_transition(conn, sid, opted_out, "left")
    config = make_config(
        ("sms", endpoint("sms", messaging=True, requires_consent="sms")), ("crm", endpoint("crm"))
    )
    fan_out(engine, config, T0)
    sms = [(r["status"], r["reason"]) for r in _deliveries(engine) if r["endpoint"] == "sms"]
    assert sms == [
        ("pending", None),
        ("suppressed", "consent: no opted-in sms consent"),
        ("suppressed", "consent: no opted-in sms consent"),
        ("suppressed", SUPPRESSED),  # the phone, which SMS reaches, is listed
        ("pending", None),  # only the e-mail is listed: SMS may still reach the person
        ("suppressed", NO_ENTRY),  # its entry was held back: the SMS tool never heard of the person
    ]
    # An endpoint with no channel is kept back by any listed identity; it got the entry, so the left.
    crm = [r["status"] for r in _deliveries(engine) if r["endpoint"] == "crm"]
    assert crm == ["pending", "pending", "pending", "suppressed", "suppressed", "pending"]


def test_fan_out_is_idempotent_per_transition_and_endpoint(engine: Engine) -> None:
    (tid,) = seed(engine, 1)
    config = make_config(("sms", endpoint("sms")))
    fan_out(engine, config, T0)
    with engine.begin() as conn:
        conn.execute(outbox.update().values(dispatched_at=None))
    fan_out(engine, config, T0)
    rows = _deliveries(engine)
    assert [(r["transition_id"], r["endpoint"]) for r in rows] == [(tid, "sms")]


def test_a_left_after_a_merge_goes_to_an_endpoint_told_of_the_kept_contacts_entry(engine: Engine) -> None:
    config = WebhooksConfig(endpoints={"crm": endpoint("crm")})
    with engine.begin() as conn:
        sid = add_segment(conn)
        ann, bob = add_contact(conn), add_contact(conn)
        add_transition(conn, sid, ann)  # Ann is a member, and the CRM was told
        add_transition(conn, sid, bob)
        add_transition(conn, sid, bob, "left")  # Bob came and went, and the CRM was told both
    fan_out(engine, config, T0)
    with engine.begin() as conn:
        conn.execute(update(deliveries).values(status="succeeded", attempts=1))
        # Bob's history is renumbered after Ann's: his `left` now sorts after her entry.
        merge(conn, keep=ann, others=[bob], reason="same e-mail", now=T0)
        left = add_transition(conn, sid, ann, "left")
    fan_out(engine, config, T0)
    with engine.connect() as conn:
        query = select(deliveries.c.status).where(deliveries.c.transition_id == left)
        status = conn.execute(query).scalar_one()
    assert status == "pending"  # not held back as "no entry": the CRM knew Ann was in


def test_a_left_whose_entry_another_fan_out_holds_is_not_held_back(engine: Engine) -> None:
    config = make_config(("sms", endpoint("sms")))
    with engine.begin() as conn:
        sid, contact = add_segment(conn), add_contact(conn)
        add_transition(conn, sid, contact)
        left = add_transition(conn, sid, contact, "left")
        left_row = conn.execute(select(outbox.c.id).where(outbox.c.transition_id == left)).scalar_one()
        # Another fan-out has locked the entry's outbox row: this one is given the left alone.
        rows = decide_deliveries(
            conn, config.endpoints, [TransitionRow(left_row, left, contact, "left", "vip")], T0, FanoutStats()
        )
    assert [(r["status"], r["reason"]) for r in rows] == [("pending", None)]


def test_a_left_is_held_back_where_only_an_entry_into_another_segment_went(engine: Engine) -> None:
    config = make_config(("sms", endpoint("sms", cap="1 per 1d")))
    with engine.begin() as conn:
        contact, vip, churn = add_contact(conn), add_segment(conn, "vip"), add_segment(conn, "churn")
        add_transition(conn, vip, contact)
        add_transition(conn, churn, contact)  # over the cap: the endpoint never hears of it
    fan_out(engine, config, T0)
    with engine.begin() as conn:
        add_transition(conn, churn, contact, "left")
    fan_out(engine, config, T0)
    assert [(r["status"], r["reason"]) for r in _deliveries(engine)] == [
        ("pending", None),
        ("suppressed", "cap: 1 per 1d reached"),
        ("suppressed", NO_ENTRY),
    ]
