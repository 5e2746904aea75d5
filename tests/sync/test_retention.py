"""`sync.retention.prune`: finished runs and finished deliveries' attempts older than a cutoff go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, insert, select

from sync.retention import PruneRefusedError, check_age, parse_age, prune
from sync.store.tables import (
    contacts,
    cursors,
    deliveries,
    delivery_attempts,
    quarantine,
    records,
    segments,
    sync_runs,
    transitions,
)

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
AGE = timedelta(days=90)
CUTOFF = NOW - AGE
OLD = CUTOFF - timedelta(days=1)
RECENT = CUTOFF + timedelta(days=1)


def _run(
    conn: Connection, *, status: str = "succeeded", finished: datetime | None = OLD, **values: Any
) -> int:
    started = (finished or OLD) - timedelta(minutes=5)
    row = {"source": "stripe", "trigger": "schedule"} | values
    return int(
        conn.execute(
            insert(sync_runs)
            .values(row | {"status": status, "started_at": started, "finished_at": finished, "stats": {}})
            .returning(sync_runs.c.id)
        ).scalar_one()
    )


def _ids(conn: Connection, table: Any) -> set[int]:
    return set(conn.execute(select(table.c.id)).scalars())


def _contact_and_segment(conn: Connection) -> tuple[int, int]:
    cid = conn.execute(
        insert(contacts).values(created_at=OLD, updated_at=OLD, changed_at=OLD).returning(contacts.c.id)
    ).scalar_one()
    sid = conn.execute(
        insert(segments)
        .values(key="vip", name="VIP", rule={}, rule_version="v1", created_at=OLD, updated_at=OLD)
        .returning(segments.c.id)
    ).scalar_one()
    return int(cid), int(sid)


def _transition(conn: Connection, cid: int, sid: int, seq: int, run: int | None = None) -> int:
    return int(
        conn.execute(
            insert(transitions)
            .values(
                segment_id=sid,
                contact_id=cid,
                kind="entered",
                occurred_at=OLD,
                reason="rule",
                rule_version="v1",
                contact_seq=seq,
                run_id=run,
            )
            .returning(transitions.c.id)
        ).scalar_one()
    )


def _record(conn: Connection, run: int, n: int) -> None:
    conn.execute(
        insert(records).values(
            source="stripe",
            stream="customers",
            external_id=f"cus_{n}",
            updated_at=OLD,
            payload={},
            stored_at=OLD,
            run_id=run,
        )
    )


def test_finished_runs_before_the_cutoff_go_and_what_they_wrote_stays(engine: Engine) -> None:
    with engine.begin() as conn:
        cid, sid = _contact_and_segment(conn)
        gone = [_run(conn), _run(conn, status="failed"), _run(conn, status="interrupted", trigger="webhook")]
        running = _run(conn, status="running", finished=None)  # begun long ago, its process killed
        at_cutoff = _run(conn, finished=CUTOFF)  # finished at the cutoff, not before it
        recent = _run(conn, finished=RECENT)
        named = _run(conn, source="hubspot")  # a stream's cursor names it
        latest_webhook = _run(conn, trigger="webhook")  # the latest of its source and trigger
        conn.execute(
            insert(cursors).values(
                source="hubspot", stream="contacts", value="x", updated_at=OLD, run_id=named
            )
        )
        _record(conn, gone[0], 1)
        _record(conn, recent, 2)
        conn.execute(
            insert(quarantine).values(
                source="stripe", stream="customers", reason="no identity", run_id=gone[1], created_at=OLD
            )
        )
        moved = _transition(conn, cid, sid, 1, run=gone[2])
    report = prune(engine, now=NOW, older_than=AGE)
    assert (report.sync_runs, report.running_kept, report.dry_run) == (3, 1, False)
    assert report.cutoff == CUTOFF
    with engine.connect() as conn:
        assert _ids(conn, sync_runs) == {running, at_cutoff, recent, named, latest_webhook}
        # The rows stay, no longer naming the deleted run (what ON DELETE SET NULL would do).
        assert set(conn.execute(select(records.c.run_id)).scalars()) == {None, recent}
        assert list(conn.execute(select(quarantine.c.run_id)).scalars()) == [None]
        assert list(conn.execute(select(transitions.c.id, transitions.c.run_id))) == [(moved, None)]


def _delivery(
    conn: Connection, tid: int, status: str, updated: datetime, attempts: int, endpoint: str = "sms"
) -> int:
    did = int(
        conn.execute(
            insert(deliveries)
            .values(
                transition_id=tid,
                endpoint=endpoint,
                webhook_id=f"msg_{tid}_{endpoint}",
                status=status,
                attempts=attempts,
                last_status_code=200,
                created_at=updated - timedelta(hours=1),
                updated_at=updated,
            )
            .returning(deliveries.c.id)
        ).scalar_one()
    )
    conn.execute(
        insert(delivery_attempts),
        [
            {
                "delivery_id": did,
                "attempted_at": updated - timedelta(minutes=i),
                "status_code": 500,
                "response_excerpt": "upstream down " * 20,
            }
            for i in range(attempts)
        ],
    )
    return did


def _attempts_of(conn: Connection) -> dict[int, int]:
    a = delivery_attempts.c
    counts = conn.execute(select(a.delivery_id, func.count()).group_by(a.delivery_id))
    return {int(d): int(n) for d, n in counts}


def test_attempts_of_deliveries_finished_before_the_cutoff_go_and_every_delivery_stays(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        cid, sid = _contact_and_segment(conn)
        tids = [_transition(conn, cid, sid, seq) for seq in range(1, 8)]
        old_finished = [
            _delivery(conn, tids[i], status, OLD, 2)
            for i, status in enumerate(("succeeded", "dead", "cancelled"))
        ]
        old_suppressed = _delivery(conn, tids[3], "suppressed", OLD, 1)
        still_trying = _delivery(conn, tids[4], "failed", OLD, 3)  # will be attempted again
        recent = _delivery(conn, tids[5], "succeeded", RECENT, 1)
        leased = _delivery(conn, tids[6], "leased", OLD, 1)
        every_delivery = _ids(conn, deliveries)
    report = prune(engine, now=NOW, older_than=AGE)
    assert report.delivery_attempts == 7
    with engine.connect() as conn:
        assert _attempts_of(conn) == {still_trying: 3, recent: 1, leased: 1}
        assert _ids(conn, deliveries) == every_delivery and len(_ids(conn, transitions)) == 7
        kept = {int(d): int(n) for d, n in conn.execute(select(deliveries.c.id, deliveries.c.attempts))}
    # A delivery keeps its count of attempts and its last status code.
    assert [kept[d] for d in (*old_finished, old_suppressed)] == [2, 2, 2, 1]


def test_a_dry_run_counts_what_would_go_and_deletes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        cid, sid = _contact_and_segment(conn)
        _run(conn)
        _run(conn)
        _run(conn, status="running", finished=None)
        _delivery(conn, _transition(conn, cid, sid, 1), "succeeded", OLD, 2)
        runs_before = _ids(conn, sync_runs)
    report = prune(engine, now=NOW, older_than=AGE, dry_run=True)
    counted = (report.sync_runs, report.delivery_attempts, report.running_kept, report.dry_run)
    assert counted == (1, 2, 1, True)
    with engine.connect() as conn:
        assert _ids(conn, sync_runs) == runs_before
        assert sum(_attempts_of(conn).values()) == 2
    assert prune(engine, now=NOW, older_than=AGE).sync_runs == 1


def test_prune_works_a_few_rows_to_a_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        cid, sid = _contact_and_segment(conn)
        runs = [_run(conn) for _ in range(7)]
        for n in range(9):
            _record(conn, runs[0], n)  # one run wrote many records
        for seq in range(1, 6):
            _delivery(conn, _transition(conn, cid, sid, seq), "succeeded", OLD, 1)
        last = _run(conn)
    changed: list[int] = [0]  # rows each transaction deleted or updated, the last one still open

    def count(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("DELETE", "UPDATE")):
            changed[-1] += max(cursor.rowcount, 0)

    def commit(_conn: Any) -> None:
        changed.append(0)

    event.listen(engine, "after_cursor_execute", count)
    event.listen(engine, "commit", commit)
    report = prune(engine, now=NOW, older_than=AGE, batch=2)
    event.remove(engine, "after_cursor_execute", count)
    event.remove(engine, "commit", commit)
    assert (report.sync_runs, report.delivery_attempts) == (7, 5)
    with engine.connect() as conn:
        assert _ids(conn, sync_runs) == {last}
        assert list(conn.execute(select(records.c.run_id).distinct())) == [(None,)]
    writing = [n for n in changed if n]
    # 9 records unlinked, 7 runs and 5 attempts deleted, never more than 2 rows to a transaction.
    assert max(writing) == 2 and sum(writing) == 9 + 7 + 5 and len(writing) == 5 + 4 + 3, changed


def test_a_cutoff_under_a_month_or_the_longest_cap_window_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        _run(conn)
        _run(conn)
    with pytest.raises(PruneRefusedError, match=r"--older-than 29d is under 30d: .* incident"):
        prune(engine, now=NOW, older_than=timedelta(days=29))
    with pytest.raises(PruneRefusedError, match=r"under the longest frequency cap's window \(60d"):
        prune(
            engine,
            now=NOW,
            older_than=timedelta(days=45),
            cap_windows=[timedelta(days=7), timedelta(days=60)],
        )
    with engine.connect() as conn:
        assert len(_ids(conn, sync_runs)) == 2
    check_age(timedelta(days=60), [timedelta(days=60)])
    check_age(timedelta(days=30))


@pytest.mark.parametrize(("text", "days"), [("90d", 90), (" 13w ", 91), ("30 d", 30)])
def test_ages_are_days_or_weeks(text: str, days: int) -> None:
    assert parse_age(text) == timedelta(days=days)


@pytest.mark.parametrize("text", ["90", "3m", "0d", "-5d", "1.5w"])
def test_other_ages_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match='expected an age in days or weeks such as "90d"'):
        parse_age(text)
