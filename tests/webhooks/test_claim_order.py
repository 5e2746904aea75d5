"""Per-contact ordering at claim time: what a later transition waits for, and what the wait costs."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, func, insert, select, update

from sync.identity import merge
from sync.store.tables import deliveries, outbox, transitions
from tests.pg_plans import rows_read
from tests.webhooks.conftest import (
    T0,
    add_contact,
    add_segment,
    add_transition,
    endpoint,
    make_config,
)
from webhooks import fan_out
from webhooks.queue import FEW_UNDISPATCHED, claim

LEASE = timedelta(seconds=60)
CONFIG = make_config(("sms", endpoint("sms")))


def _claim(conn: Any, n: int = 100, now: Any = T0) -> list[int]:
    return claim(conn, "sms", n, now, worker_id="w", lease=LEASE, ordered=True)


def _kinds(engine: Engine, ids: list[int]) -> list[tuple[int, str]]:
    """(contact, kind) of the claimed deliveries."""
    query = (
        select(transitions.c.contact_id, transitions.c.kind)
        .join(deliveries, deliveries.c.transition_id == transitions.c.id)
        .where(deliveries.c.id.in_(ids))
        .order_by(deliveries.c.id)
    )
    with engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(query)]


def _fail(engine: Engine, ids: list[int]) -> None:
    """The claimed deliveries failed once and wait for their retry (still open)."""
    with engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(ids))
            .values(status="failed", leased_by=None, lease_expires_at=None, next_attempt_at=T0)
        )


def test_after_a_merge_the_kept_contacts_next_transition_waits_for_the_merged_ones_open_delivery(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn)
        ada, ada_phone = add_contact(conn, "ada@example.com"), add_contact(conn, "ada2@example.com")
        add_transition(conn, sid, ada_phone, "entered")
    fan_out(engine, CONFIG, T0)
    with engine.begin() as conn:
        [entry] = _claim(conn)
    _fail(engine, [entry])  # the merged contact's entry is retried through an outage
    with engine.begin() as conn:
        merge(conn, keep=ada, others=[ada_phone], reason="shared identity", now=T0)
        add_transition(conn, sid, ada, "left")  # numbered after the entry it now follows
    fan_out(engine, CONFIG, T0)
    with engine.begin() as conn:
        assert _kinds(engine, _claim(conn)) == [(ada, "entered")], "the left waits for the retried entry"


@pytest.mark.parametrize("waiting", [0, FEW_UNDISPATCHED + 8])
def test_a_later_transition_waits_for_an_earlier_one_not_fanned_out_behind_any_backlog(
    engine: Engine, waiting: int
) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn)
        ada = add_contact(conn, "ada@example.com")
        entered = add_transition(conn, sid, ada, "entered")
        add_transition(conn, sid, ada, "left")
    fan_out(engine, CONFIG, T0)
    with engine.begin() as conn:
        # The entry's fan-out is another worker's, not committed yet: no deliveries, its row waiting.
        conn.execute(delete(deliveries).where(deliveries.c.transition_id == entered))
        conn.execute(update(outbox).where(outbox.c.transition_id == entered).values(dispatched_at=None))
        for n in range(waiting):  # a big sync's transitions, not fanned out yet
            add_transition(conn, sid, add_contact(conn, f"c{n}@example.com"), "entered")
    with engine.begin() as conn:
        assert _claim(conn) == [], "the left waits for its entry"
    fan_out(engine, CONFIG, T0)
    with engine.begin() as conn:
        claimed = _kinds(engine, _claim(conn))
    assert [k for c, k in claimed if c == ada] == ["entered"]


def _history(engine: Engine, contacts: int, earlier: int, at: str = "sms") -> None:
    """`contacts` contacts with `earlier` transitions delivered at `at` each, then one due there."""
    with engine.begin() as conn:
        sid = add_segment(conn, at)
        people = [add_contact(conn) for _ in range(contacts)]
        tid = conn.execute(select(func.coalesce(func.max(transitions.c.id), 0))).scalar_one()
        rows: dict[Any, list[dict[str, Any]]] = {transitions: [], outbox: [], deliveries: []}
        for person in people:
            for seq in range(1, earlier + 2):
                tid += 1
                last = seq == earlier + 1
                rows[transitions].append(
                    {
                        "id": tid,
                        "segment_id": sid,
                        "contact_id": person,
                        "kind": "entered" if seq % 2 else "left",
                        "occurred_at": T0,
                        "reason": "rule",
                        "rule_version": "v1",
                        "contact_seq": seq,
                    }
                )
                rows[outbox].append({"transition_id": tid, "created_at": T0, "dispatched_at": T0})
                rows[deliveries].append(
                    {
                        "transition_id": tid,
                        "endpoint": at,
                        "contact_id": person,
                        "webhook_id": f"msg_{tid:032x}",
                        "status": "pending" if last else "succeeded",
                        "attempts": 0 if last else 1,
                        "next_attempt_at": T0 if last else None,
                        "created_at": T0,
                        "updated_at": T0,
                    }
                )
        for table, values in rows.items():
            conn.execute(insert(table), values)


def _sqlite_steps(engine: Engine, at: str) -> int:
    """SQLite virtual-machine steps (in thousands) an ordered claim of every due delivery at `at` takes."""
    with engine.connect() as conn:
        conn.begin()
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        raw.set_progress_handler(count, 1000)
        claimed = claim(conn, at, 100, T0, worker_id="w", lease=LEASE, ordered=True)
        raw.set_progress_handler(None, 0)
        conn.rollback()
    assert len(claimed) == 20
    return steps


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_sqlite_claims_cost_follows_open_work_not_each_contacts_history(engine: Engine) -> None:
    _history(engine, 20, 1, "short")
    _history(engine, 20, 200, "long")
    short, long = _sqlite_steps(engine, "short"), _sqlite_steps(engine, "long")
    # Walking 200 earlier transitions a contact took about a hundred times the steps.
    assert long <= short * 2 + 5, (short, long)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_postgres_claim_reads_each_contacts_open_deliveries_not_its_history(engine: Engine) -> None:
    _history(engine, 20, 50)
    statements: list[tuple[str, Any]] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append((args[2], args[3])))
    with engine.begin() as conn:
        assert len(_claim(conn)) == 20
        conn.rollback()
    [(sql, parameters)] = [s for s in statements if s[0].startswith("UPDATE deliveries")]
    with engine.begin() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        [[[plan]]] = driver.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", parameters).fetchall()
        conn.rollback()
    # 1,000 earlier transitions: each claimed delivery's own, and its open deliveries' by key.
    assert rows_read(plan["Plan"], "transitions") <= 3 * 20, plan
