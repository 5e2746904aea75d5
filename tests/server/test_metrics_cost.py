"""A `/metrics` scrape reads what is current, never the whole history, on both backends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, event, insert, text, update

from crmhub.server.metrics import Metrics
from sync.store.tables import deliveries, outbox, transitions
from tests.pg_plans import rows_read
from tests.webhooks.conftest import T0, Clock, add_transition, seed

_HISTORY = 2000


def _year_of_history(engine: Engine) -> None:
    """`_HISTORY` old entries, each delivered; then two recent entries, one delivery still pending."""
    old = seed(engine, _HISTORY, now=T0 - timedelta(days=200))
    with engine.begin() as conn:
        recent = [add_transition(conn, 1, contact, now=T0 - timedelta(minutes=5)) for contact in (1, 2)]
        conn.execute(update(outbox).where(outbox.c.transition_id != recent[1]).values(dispatched_at=T0))
        rows = [(tid, "succeeded") for tid in old] + [(recent[0], "pending")]
        conn.execute(
            insert(deliveries),
            [
                {
                    "transition_id": tid,
                    "endpoint": "sms",
                    "webhook_id": f"msg_{tid}",
                    "status": status,
                    "created_at": T0 - timedelta(days=200),
                    "updated_at": T0 - timedelta(days=200),
                }
                for tid, status in rows
            ],
        )
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))


def test_a_scrape_reads_the_queue_and_a_day_of_transitions_not_the_history(engine: Engine) -> None:
    _year_of_history(engine)
    executed: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            executed.append((statement, parameters))

    metrics = Metrics()
    metrics.bind(engine, Clock(T0))
    event.listen(engine, "before_cursor_execute", record)
    rendered = metrics.render().decode()
    event.remove(engine, "before_cursor_execute", record)
    assert 'crmhub_transitions_last_day{kind="entered",segment="vip"} 2.0' in rendered
    assert 'crmhub_deliveries{endpoint="sms",status="pending"} 1.0' in rendered
    assert executed
    with engine.connect() as conn:
        for sql, parameters in executed:
            if conn.dialect.name == "sqlite":
                plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)]
                # SCAN is a read of every row (or every index entry) of a table.
                assert not any(step.startswith(("SCAN transitions", "SCAN deliveries")) for step in plan), (
                    sql,
                    plan,
                )
            else:
                found = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", parameters)
                [[[plan]]] = found.fetchall()
                # The day's two transitions (read once per kind) and the open delivery, not the history.
                assert rows_read(plan["Plan"], transitions.name) <= 2 * 2, (sql, plan)
                assert rows_read(plan["Plan"], deliveries.name) <= 1, (sql, plan)
