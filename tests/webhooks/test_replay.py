"""A replay keeps to the cap and suppression list, and leaves alone what a worker claimed or sent since."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, insert, select, update

from sync.consent.suppression import identity_hash
from sync.store.tables import consent_records, deliveries, suppressions
from tests.webhooks.conftest import T0, add_contact, add_segment, add_transition, endpoint, make_config, seed
from webhooks import fan_out
from webhooks.admin import replay
from webhooks.eligibility import SUPPRESSED


def _statuses(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(deliveries.c.id, deliveries.c.status)).tuples().all())


# Only PostgreSQL lets another worker commit in between: on SQLite a replay holds the write lock.
@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_delivery_claimed_or_sent_meanwhile_is_not_queued_again(engine: Engine) -> None:
    seed(engine, 3)
    config = make_config(("sms", endpoint("sms")))
    fan_out(engine, config, T0)
    with engine.begin() as conn:
        conn.execute(update(deliveries).values(status="failed", attempts=3, reason="HTTP 503"))
    meanwhile = {1: "succeeded", 2: "leased"}  # what workers did while the replay was deciding

    def workers_move_on(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("UPDATE deliveries SET status") or not meanwhile:
            return
        changes = dict(meanwhile)
        meanwhile.clear()  # once, and not again for the workers' own updates below
        with engine.begin() as other:
            for delivery_id, status in changes.items():
                other.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(status=status))

    event.listen(engine, "before_cursor_execute", workers_move_on)
    try:
        with engine.begin() as conn:
            done = replay(conn, T0, endpoints=config.endpoints, status="failed")
    finally:
        event.remove(engine, "before_cursor_execute", workers_move_on)
    assert done.replayed == 1, "only the one still failed"
    assert _statuses(engine) == {1: "succeeded", 2: "leased", 3: "pending"}


def test_a_replay_withholds_an_entry_over_the_cap(engine: Engine) -> None:
    config = make_config(("sms", endpoint("sms", cap="1 per 7d")))
    with engine.begin() as conn:
        contact = add_contact(conn)
        for key in ("vip", "churn", "trial"):
            add_transition(conn, add_segment(conn, key), contact)
    fan_out(engine, config, T0)
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == 1).values(status="succeeded", attempts=1))
    assert _statuses(engine) == {1: "succeeded", 2: "suppressed", 3: "suppressed"}
    with engine.begin() as conn:
        by_id = replay(conn, T0 + timedelta(days=1), endpoints=config.endpoints, delivery_id=2)
        # A week on, all three dead: the oldest goes again, the others would take it over the cap.
        conn.execute(update(deliveries).values(status="dead", attempts=10))
        bulk = replay(conn, T0 + timedelta(days=8), endpoints=config.endpoints, status="dead")
    assert (by_id.replayed, by_id.withheld) == (0, {"cap: 1 per 7d reached": 1})
    assert (bulk.replayed, bulk.withheld) == (1, {"cap: 1 per 7d reached": 2})
    assert _statuses(engine) == {1: "pending", 2: "dead", 3: "dead"}


def test_a_replay_withholds_an_entry_only_where_the_listed_identity_is_reached(engine: Engine) -> None:
    config = make_config(
        ("sms", endpoint("sms", messaging=True, requires_consent="sms")), ("crm", endpoint("crm"))
    )
    with engine.begin() as conn:
        contact = add_contact(conn, "ada@example.com")
        conn.execute(
            insert(consent_records).values(
                contact_id=contact,
                channel="sms",
                status="opted_in",
                source="test",
                proof={},
                recorded_at=T0 - timedelta(days=1),
            )
        )
        add_transition(conn, add_segment(conn), contact)
    fan_out(engine, config, T0)
    with engine.begin() as conn:
        conn.execute(update(deliveries).values(status="dead", attempts=10, reason="HTTP 503"))
        # The e-mail is listed since: the CRM may not have the person again, the SMS tool may.
        conn.execute(
            insert(suppressions).values(
                kind="email", value_hash=identity_hash("ada@example.com"), reason="opt-out", created_at=T0
            )
        )
        done = replay(conn, T0 + timedelta(days=1), endpoints=config.endpoints, status="dead")
    assert (done.replayed, done.withheld) == (1, {SUPPRESSED: 1})
    with engine.connect() as conn:
        by_endpoint = dict(conn.execute(select(deliveries.c.endpoint, deliveries.c.status)).tuples().all())
    assert by_endpoint == {"sms": "pending", "crm": "dead"}
