"""Claiming: leases, expiry, and on PostgreSQL several workers taking disjoint sets with SKIP LOCKED."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from sync.store import create_store_engine, upgrade
from sync.store.tables import deliveries
from tests.pg_plans import rows_read
from tests.webhooks.conftest import (
    T0,
    Clock,
    Consumer,
    add_contact,
    add_segment,
    add_transition,
    endpoint,
    make_config,
    make_worker,
    secrets_for,
    seed,
)
from webhooks import fan_out
from webhooks.fanout import fan_out_batch
from webhooks.queue import claim

LEASE = timedelta(seconds=60)


def _claim(conn, n: int, worker: str, now=T0) -> list[int]:
    return claim(conn, "sms", n, now, worker_id=worker, lease=LEASE, ordered=True)


def test_a_lease_hides_a_delivery_until_it_expires(engine: Engine) -> None:
    seed(engine, 2)
    fan_out(engine, make_config(("sms", endpoint("sms"))), T0)
    with engine.begin() as conn:
        first = _claim(conn, 10, "a")
    assert len(first) == 2
    with engine.begin() as conn:
        assert _claim(conn, 10, "b") == []
        assert _claim(conn, 10, "b", T0 + LEASE) == first
        owners = conn.execute(select(deliveries.c.leased_by).distinct()).scalars().all()
    assert owners == ["b"]


def test_a_claim_walks_the_due_index_in_order_instead_of_sorting_every_due_row(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the plan checked is SQLite's; PostgreSQL plans by its statistics")
    seed(engine, 2)
    fan_out(engine, make_config(("sms", endpoint("sms"))), T0)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with engine.begin() as conn:
        assert len(_claim(conn, 10, "a")) == 2
    (claim_sql,) = [s for s in statements if s.startswith("UPDATE deliveries")]
    with engine.connect() as conn:
        plan = [
            r[3]
            for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {claim_sql}", (None,) * claim_sql.count("?"))
        ]
    assert any("ix_deliveries_endpoint_next_attempt_at_id" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


def _fanned_out_store(url: str, contacts: int) -> Engine:
    """A migrated store at `url` with `contacts` entries fanned out to the `sms` endpoint."""
    engine = create_store_engine(url)
    upgrade(engine)
    seed(engine, contacts)
    fan_out(engine, make_config(("sms", endpoint("sms"))), T0)
    return engine


@pytest.mark.postgres
def test_a_postgres_claim_reads_its_batch_not_the_whole_queue_after_a_big_fan_out(fresh_pg_url: str) -> None:
    # On a store never analyzed, the claim planned for an empty queue: it read and sorted every due
    # delivery, then joined the picked ids against a scan of the table (40 ms per claim at 20,000).
    engine = _fanned_out_store(fresh_pg_url, 1_500)
    statements: list[tuple[str, Any]] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append((args[2], args[3])))
    with engine.begin() as conn:
        assert len(_claim(conn, 10, "a")) == 10
        conn.rollback()
    [(sql, parameters)] = [s for s in statements if s[0].startswith("UPDATE deliveries")]
    with engine.begin() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        [[[plan]]] = driver.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", parameters).fetchall()
        conn.rollback()
    engine.dispose()
    assert rows_read(plan["Plan"], "deliveries") <= 100, plan


@pytest.mark.postgres
def test_two_postgres_workers_claim_disjoint_sets_without_waiting(fresh_pg_url: str) -> None:
    engine = _fanned_out_store(fresh_pg_url, 10)
    with engine.connect() as one, engine.connect() as two:
        one.begin()
        two.begin()
        a = _claim(one, 6, "a")  # still uncommitted: its rows are locked
        b = _claim(two, 6, "b")  # skips them instead of blocking
        one.commit()
        two.commit()
    assert len(a) == 6 and len(b) == 4 and not set(a) & set(b)
    engine.dispose()


@pytest.mark.postgres
def test_two_postgres_workers_deliver_everything_once_between_them(fresh_pg_url: str) -> None:
    engine = create_store_engine(fresh_pg_url)
    upgrade(engine)
    seed(engine, 40)
    config = make_config(("sms", endpoint("sms", concurrency=5)))
    environ, consumer = secrets_for(config), Consumer()
    workers = [make_worker(engine, config, {"sms": consumer}, environ, worker_id=w) for w in ("a", "b")]

    async def both() -> None:
        await asyncio.gather(*(w.run(Clock()) for w in workers))

    asyncio.run(both())
    with engine.connect() as conn:
        statuses = conn.execute(select(deliveries.c.status)).scalars().all()
    assert statuses == ["succeeded"] * 40
    assert len(consumer.ids()) == len(set(consumer.ids())) == 40
    engine.dispose()


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_later_transition_waits_for_an_earlier_one_another_fan_out_holds(engine: Engine) -> None:
    with engine.begin() as conn:
        sid = add_segment(conn)
        contact = add_contact(conn, "ada@example.com")
        entered = add_transition(conn, sid, contact, "entered")
        add_transition(conn, sid, contact, "left")
    config = make_config(("sms", endpoint("sms")))
    with engine.connect() as one, engine.connect() as two:
        one.begin()
        fan_out_batch(one, config, T0, batch_size=1)  # holds the entry's outbox row, uncommitted
        two.begin()
        assert fan_out_batch(two, config, T0, batch_size=10).deliveries == 1  # SKIP LOCKED: the left
        assert _claim(two, 10, "b") == [], "the left waits: its entry is not fanned out yet"
        two.commit()
        one.commit()
    with engine.begin() as conn:
        [first] = _claim(conn, 10, "a")
        kind = select(deliveries.c.transition_id).where(deliveries.c.id == first)
        assert conn.execute(kind).scalar_one() == entered
