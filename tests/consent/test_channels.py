"""A consent channel is one of `[consent] channels`, and the record in force is the latest one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, func, select

from sync.consent import ConsentConfig, ConsentError, Feedback, apply_feedback, opt_in, opt_out
from sync.store import write_transaction
from sync.store.tables import consent_records, suppressions
from tests.consent.conftest import ENDPOINTS, NOW, assert_unsubscribed, evaluate, members

FUTURE = NOW + timedelta(days=3650)


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        records = conn.execute(select(func.count()).select_from(consent_records)).scalar_one()
        listed = conn.execute(select(func.count()).select_from(suppressions)).scalar_one()
    return records, listed


@pytest.mark.parametrize(("given", "found"), [("sms", "sms"), ("SMS", "sms"), (" Email ", "email")])
def test_a_channel_is_read_in_any_case(given: str, found: str) -> None:
    assert ConsentConfig().channel(given) == found


@pytest.mark.parametrize("given", ["", "  ", "fax", "e-mail"])
def test_an_unknown_channel_is_refused_naming_the_channels_and_where_to_add_one(given: str) -> None:
    with pytest.raises(ConsentError, match=r"\(email, sms\).*add the channel to \[consent\] channels"):
        ConsentConfig().channel(given)


def test_a_consent_source_for_an_unknown_channel_is_a_configuration_error() -> None:
    source = {"source": "hubspot", "path": "properties.x", "channel": "SMS", "opted_out": ["true"]}
    with pytest.raises(ValidationError, match=r"sources\[0\]\.channel: expected one of"):
        ConsentConfig.model_validate({"sources": [source]})


@pytest.mark.parametrize("status", ["opted_out", "opted_in"])
def test_opt_out_and_opt_in_refuse_an_unknown_channel_and_record_nothing(
    engine: Engine, jane: int, status: str
) -> None:
    before = _counts(engine)
    act = opt_out if status == "opted_out" else opt_in
    with pytest.raises(ConsentError, match="found 'fax'"), write_transaction(engine) as conn:
        act(conn, contact_id=jane, channel="fax", source="api", proof={}, now=NOW, evaluate=evaluate)
    assert _counts(engine) == before


def test_feedback_names_its_channel_in_any_case(engine: Engine, jane: int) -> None:
    feedback = Feedback.model_validate(
        {
            "type": "contact.unsubscribed",
            "timestamp": "2026-11-23T11:59:00Z",
            "data": {"contact_id": jane, "channel": "SMS", "webhook_id": "msg_1"},
        }
    )
    with write_transaction(engine) as conn:
        result = apply_feedback(
            conn, feedback, endpoint="texter", channel=None, now=NOW, evaluate=evaluate, endpoints=["texter"]
        )
    assert result["channel"] == "sms" and result["left"] == 1
    assert_unsubscribed(engine, jane, "sms_offers", "texter", kept="newsletter")


@pytest.mark.parametrize("kind", ["contact.complained", "contact.bounced"])
def test_feedback_for_an_unknown_channel_is_refused_and_records_nothing(
    engine: Engine, jane: int, kind: str
) -> None:
    feedback = Feedback.model_validate(
        {"type": kind, "timestamp": "2026-11-23T11:59:00Z", "data": {"contact_id": jane, "channel": "fax"}}
    )
    before = _counts(engine)
    with (
        pytest.raises(ConsentError, match=r"feedback from texter: .*email, sms"),
        write_transaction(engine) as conn,
    ):
        apply_feedback(conn, feedback, endpoint="texter", channel="sms", now=NOW, evaluate=evaluate)
    assert _counts(engine) == before


def test_an_opt_in_outranked_by_a_newer_opt_out_says_so_and_lifts_no_suppression(
    engine: Engine, jane: int
) -> None:
    common: dict[str, Any] = {
        "contact_id": jane,
        "channel": "sms",
        "source": "api",
        "proof": {},
        "evaluate": evaluate,
    }
    with write_transaction(engine) as conn:
        opt_out(conn, now=FUTURE, endpoints=ENDPOINTS["sms"], **common)
        result = opt_in(conn, now=NOW, **common)
    assert result.recorded and result.outranked
    assert (result.in_force, result.in_force_at) == ("opted_out", FUTURE)
    assert result.as_dict()["in_force_at"] == FUTURE.isoformat()
    with engine.connect() as conn:
        assert jane not in members(conn, "sms_offers")
        reasons = conn.execute(select(suppressions.c.reason)).scalars().all()
    assert reasons == ["opt-out:sms"]


def test_an_opt_out_outranked_by_a_newer_opt_in_is_recorded_and_still_suppresses(
    engine: Engine, jane: int
) -> None:
    # Jane's SMS opt-in came from her form answer at EARLIER; this opt-out is dated before it.
    with write_transaction(engine) as conn:
        result = opt_out(
            conn,
            contact_id=jane,
            channel="sms",
            source="api",
            proof={},
            now=NOW - timedelta(days=60),
            evaluate=evaluate,
            endpoints=ENDPOINTS["sms"],
        )
    assert result.recorded and result.outranked and result.in_force == "opted_in"
    assert result.suppressed == 1 and result.cancelled == 1
    with engine.connect() as conn:
        assert jane in members(conn, "sms_offers")  # as segments read it: the newer opt-in


def test_a_result_in_force_is_not_outranked(engine: Engine, jane: int) -> None:
    with write_transaction(engine) as conn:
        result = opt_out(
            conn, contact_id=jane, channel="Sms", source="api", proof={}, now=NOW, evaluate=evaluate
        )
    assert result.channel == "sms" and not result.outranked
    assert (result.in_force, result.in_force_at) == ("opted_out", NOW)
