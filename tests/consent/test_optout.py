"""An opt-out through a synced page or sender feedback acts at once, and a re-import does not undo it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from sync.consent import Feedback, UnknownContactError, apply_feedback, identity_hash, opt_in
from sync.consent.records import in_force
from sync.store import write_transaction
from sync.store.tables import consent_records, deliveries, suppressions
from tests.consent.conftest import (
    EARLIER,
    ENDPOINTS,
    LATER,
    NOW,
    WEBHOOKS,
    assert_reimport_stays_out,
    assert_unsubscribed,
    delivery_rows,
    delivery_statuses,
    dispatch,
    evaluate,
    hubspot_contact,
    identify,
    members,
    merge_in_sms_opt_out,
    opted_in_jane,
    page_store,
    segmentio_page_store,
    store_page,
    typeform_response,
)
from webhooks.admin import replay
from webhooks.fanout import fan_out

EMAIL, PHONE = "jane.doe@example.com", "+14155552671"


def test_hubspot_optout_in_a_synced_page_leaves_email_segments_at_once(engine: Engine, jane: int) -> None:
    store_page(engine, page_store(), hubspot_contact("501", email="Jane.Doe@Example.com", optout="true"))
    assert_unsubscribed(engine, jane, "newsletter", "mailer", kept="sms_offers")
    assert_reimport_stays_out(engine, jane, "newsletter")


def test_typeform_no_in_a_synced_page_leaves_sms_segments(engine: Engine, jane: int) -> None:
    later_answer = typeform_response(
        "t2", email="jane.doe@example.com", phone="+1 415 555 2671", consent=False, at=NOW
    )
    store_page(engine, page_store(), later_answer)
    assert_unsubscribed(engine, jane, "sms_offers", "texter", kept="newsletter")
    with engine.connect() as conn:
        proofs = [
            p
            for (p,) in conn.execute(
                select(consent_records.c.proof).where(consent_records.c.channel == "sms")
            )
        ]
    assert {p["record_id"] for p in proofs} == {"t1", "t2"}
    assert {p["answer"] for p in proofs} == {True, False}
    assert {p["form_id"] for p in proofs} == {"crmhubNPS"}
    assert_reimport_stays_out(engine, jane, "sms_offers")


def test_sender_feedback_unsubscribe_opts_out_of_the_endpoint_channel(engine: Engine, jane: int) -> None:
    feedback = Feedback.model_validate(
        {
            "type": "contact.unsubscribed",
            "timestamp": "2026-11-23T11:59:00Z",
            "data": {"contact_id": jane, "webhook_id": "msg_1"},
        }
    )
    with write_transaction(engine) as conn:
        result = apply_feedback(
            conn,
            feedback,
            endpoint="texter",
            channel="sms",
            now=NOW,
            evaluate=evaluate,
            endpoints=ENDPOINTS["sms"],
        )
    assert result["status"] == "opted_out" and result["left"] == 1 and result["cancelled"] == 1
    assert_unsubscribed(engine, jane, "sms_offers", "texter", kept="newsletter")
    assert_reimport_stays_out(engine, jane, "sms_offers")


def test_an_opt_out_a_merge_puts_in_force_acts_at_once(engine: Engine, jane: int) -> None:
    merge_in_sms_opt_out(engine, jane)
    with engine.connect() as conn:
        listed = conn.execute(select(suppressions.c.kind, suppressions.c.value_hash, suppressions.c.reason))
        assert set(listed.tuples()) == {("phone", identity_hash(PHONE), "opt-out:sms")}
        entry = delivery_rows(conn, jane)[("texter", "entered")]
        assert (entry["status"], entry["reason"]) == ("cancelled", "unsubscribed")
        assert delivery_statuses(conn, jane)[("mailer", "entered")] == "pending"
    assert_unsubscribed(engine, jane, "sms_offers", "texter", kept="newsletter")
    assert_reimport_stays_out(engine, jane, "sms_offers")


def test_an_opt_in_a_merge_puts_in_force_lifts_no_suppression(engine: Engine, jane: int) -> None:
    # Jane says no by SMS; a Segment.com user's later yes is merged into her.
    no = typeform_response("t2", email=EMAIL, phone=PHONE, consent=False, at=NOW)
    store_page(engine, page_store(), no)
    store = segmentio_page_store(opted_in=["false"])
    store_page(engine, store, identify("u_000262", LATER, sms_optout=False), now=LATER)
    store_page(engine, store, identify("u_000262", LATER + timedelta(minutes=1), email=EMAIL), now=LATER)
    with engine.connect() as conn:
        current = in_force(conn, jane, "sms")
        assert current is not None and current.status == "opted_in"
        # The form's "no" listed the phone; a merge is no statement of the person's: it stays listed.
        listed = conn.execute(select(suppressions.c.kind, suppressions.c.reason)).tuples()
        assert set(listed) == {("phone", "opt-out:sms")}


def test_a_stored_page_is_not_recorded_twice(engine: Engine, jane: int) -> None:
    again = typeform_response("t1", email="jane.doe@example.com", phone="+14155552671", consent=True)
    store_page(engine, page_store(), again, now=LATER)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(consent_records)).scalar_one() == 2


def test_feedback_for_an_unknown_contact_is_a_clear_error(engine: Engine) -> None:
    feedback = Feedback.model_validate(
        {"type": "contact.bounced", "timestamp": "2026-11-23T11:59:00Z", "data": {"contact_id": 999}}
    )
    with write_transaction(engine) as conn, pytest.raises(UnknownContactError, match="contact 999"):
        apply_feedback(conn, feedback, endpoint="mailer", channel="email", now=NOW, evaluate=evaluate)


@pytest.mark.parametrize(
    ("lease_left", "after"),
    [(timedelta(seconds=-1), "cancelled"), (timedelta(seconds=60), "leased")],
    ids=["lease-ran-out", "in-flight"],
)
def test_an_opt_out_cancels_an_entry_whose_worker_died_but_lets_one_in_flight_finish(
    engine: Engine, jane: int, lease_left: timedelta, after: str
) -> None:
    # A worker leased Jane's SMS entry; with its lease run out the queue would send it again.
    with write_transaction(engine) as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.endpoint == "texter")
            .values(status="leased", leased_by="worker-a", lease_expires_at=NOW + lease_left)
        )
    store_page(engine, page_store(), typeform_response("t2", email=EMAIL, phone=PHONE, consent=False))
    with engine.connect() as conn:
        assert delivery_statuses(conn, jane)[("texter", "entered")] == after


def _sms_unsubscribe(engine: Engine, contact_id: int) -> dict[str, Any]:
    """The texter's feedback that `contact_id` unsubscribed, applied as the server does."""
    feedback = Feedback.model_validate(
        {
            "type": "contact.unsubscribed",
            "timestamp": "2026-11-23T11:59:00Z",
            "data": {"contact_id": contact_id, "webhook_id": "msg_1"},
        }
    )
    with write_transaction(engine) as conn:
        return apply_feedback(
            conn,
            feedback,
            endpoint="texter",
            channel="sms",
            now=NOW,
            evaluate=evaluate,
            endpoints=ENDPOINTS["sms"],
        )


def test_an_opt_out_cancels_an_entry_waiting_for_its_retry(engine: Engine, jane: int) -> None:
    # The texter answered 503 to Jane's SMS entry; the queue would try it again in an hour.
    with write_transaction(engine) as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.endpoint == "texter")
            .values(
                status="failed", attempts=1, last_status_code=503, next_attempt_at=NOW + timedelta(hours=1)
            )
        )
    assert _sms_unsubscribe(engine, jane)["cancelled"] == 1
    with engine.connect() as conn:
        entry = delivery_rows(conn, jane)[("texter", "entered")]
        assert (entry["status"], entry["reason"], entry["next_attempt_at"]) == (
            "cancelled",
            "unsubscribed",
            None,
        )
        assert delivery_statuses(conn, jane)[("mailer", "entered")] == "pending"


def test_an_opt_out_cancels_entries_to_an_endpoint_needing_the_channel_of_any_segment(engine: Engine) -> None:
    # The texter also hears of "everyone", a segment asking no consent: its entry is an SMS too.
    jane = opted_in_jane(engine)
    texter = WEBHOOKS.endpoints["texter"].model_copy(update={"segments": ["sms_offers", "everyone"]})
    fan_out(
        engine, WEBHOOKS.model_copy(update={"endpoints": {**WEBHOOKS.endpoints, "texter": texter}}), EARLIER
    )
    with engine.connect() as conn:
        texter_entries = (
            select(deliveries.c.status).where(deliveries.c.endpoint == "texter").order_by(deliveries.c.id)
        )
        assert list(conn.execute(texter_entries).scalars()) == ["pending", "pending"]
    assert _sms_unsubscribe(engine, jane)["cancelled"] == 2
    with engine.connect() as conn:
        assert list(conn.execute(texter_entries).scalars()) == ["cancelled", "cancelled"]
        assert delivery_statuses(conn, jane)[("mailer", "entered")] == "pending"


def test_a_replay_never_brings_back_an_entry_of_someone_who_opted_out(engine: Engine, jane: int) -> None:
    # Jane's e-mail entry died at the mailer (it answered 400); then she opts out of both channels.
    with write_transaction(engine) as conn:
        conn.execute(update(deliveries).where(deliveries.c.endpoint == "mailer").values(status="dead"))
    store_page(engine, page_store(), hubspot_contact("501", email=EMAIL, optout="true"))
    store_page(engine, page_store(), typeform_response("t2", email=EMAIL, phone=PHONE, consent=False))
    with write_transaction(engine) as conn:
        before = delivery_statuses(conn, jane)
        assert before[("texter", "entered")] == "cancelled" and before[("mailer", "entered")] == "dead"
        endpoints = WEBHOOKS.endpoints
        asked = [
            replay(conn, LATER, endpoints=endpoints, since=EARLIER),
            replay(conn, LATER, endpoints=endpoints, status="dead"),
            replay(conn, LATER, endpoints=endpoints, status="cancelled"),
        ]
        texter_entry = conn.execute(
            select(deliveries.c.id).where(
                deliveries.c.endpoint == "texter", deliveries.c.status == "cancelled"
            )
        ).scalar_one()
        asked.append(replay(conn, LATER, endpoints=endpoints, delivery_id=texter_entry))
        assert delivery_statuses(conn, jane) == before
    assert [a.replayed for a in asked] == [0, 0, 0, 0]
    assert [sum(a.withheld.values()) for a in asked] == [1, 1, 1, 1]  # bulk takes dead and failed only
    assert set(asked[3].withheld) == {"no longer in the segment, or changed there since"}


def test_an_sms_no_keeps_back_the_sms_tools_entries_not_the_newsletters(engine: Engine) -> None:
    store_page(engine, page_store(), typeform_response("t1", email=EMAIL, phone=PHONE, consent=False))
    with write_transaction(engine) as conn:
        [jane] = conn.execute(select(consent_records.c.contact_id).distinct()).scalars()
        opt_in(conn, contact_id=jane, channel="email", source="api", proof={}, now=NOW, evaluate=evaluate)
    dispatch(engine)
    with engine.connect() as conn:
        assert members(conn, "newsletter") == {jane} and members(conn, "sms_offers") == set()
        assert delivery_statuses(conn, jane) == {("mailer", "entered"): "pending"}
