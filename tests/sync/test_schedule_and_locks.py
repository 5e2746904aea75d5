"""Leases in the store and cron schedules: what keeps scheduled runs from overlapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from sync.locks import acquire, holder_of, lapsed_holder, lock_wait_failed, release, renew, take_over
from sync.schedule import Job, ScheduleConfig, jobs, next_run
from sync.store import write_transaction

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=10)


def test_a_lease_is_held_by_one_holder_until_released(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        assert acquire(conn, "sync:stripe", "a", now=NOW, ttl=TTL)
        assert not acquire(conn, "sync:stripe", "b", now=NOW, ttl=TTL)
        assert acquire(conn, "sync:hubspot", "b", now=NOW, ttl=TTL)
        assert holder_of(conn, "sync:stripe", now=NOW) == "a"
        release(conn, "sync:stripe", "b")  # not b's to give back
        assert holder_of(conn, "sync:stripe", now=NOW) == "a"
        release(conn, "sync:stripe", "a")
        assert holder_of(conn, "sync:stripe", now=NOW) is None
        assert acquire(conn, "sync:stripe", "b", now=NOW, ttl=TTL)


def test_a_lease_renews_for_its_holder_and_expires_for_everyone_else(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        assert acquire(conn, "segments", "a", now=NOW, ttl=TTL)
        later = NOW + timedelta(minutes=9)
        assert acquire(conn, "segments", "a", now=later, ttl=TTL)  # renewed until later + TTL
        assert not acquire(conn, "segments", "b", now=NOW + timedelta(minutes=11), ttl=TTL)
        assert acquire(conn, "segments", "b", now=later + TTL, ttl=TTL)
        assert holder_of(conn, "segments", now=later + TTL) == "b"


def test_a_dead_holders_lease_moves_only_from_that_holder(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        assert acquire(conn, "sync:typeform", "dead", now=NOW, ttl=TTL)
        assert not take_over(conn, "sync:typeform", "someone-else", "new", now=NOW, ttl=TTL)
        assert take_over(conn, "sync:typeform", "dead", "new", now=NOW, ttl=TTL)
        assert holder_of(conn, "sync:typeform", now=NOW) == "new"


def test_renewing_keeps_only_the_holders_own_lease_and_never_takes_it_afresh(engine: Engine) -> None:
    later = NOW + 2 * TTL
    with write_transaction(engine) as conn:
        assert not renew(conn, "sync:stripe", "a", now=NOW, ttl=TTL)  # never taken: nothing to renew
        assert acquire(conn, "sync:stripe", "a", now=NOW, ttl=TTL)
        assert renew(conn, "sync:stripe", "a", now=NOW + TTL / 2, ttl=TTL)
        assert holder_of(conn, "sync:stripe", now=NOW + TTL) == "a"  # renewed past its first expiry
        assert acquire(conn, "sync:stripe", "b", now=later, ttl=TTL)  # ran out: b took it
        assert not renew(conn, "sync:stripe", "a", now=later, ttl=TTL)
        release(conn, "sync:stripe", "b")
        # Free again, but b may have pulled what a was pulling: a must not carry on as if it still held it.
        assert not renew(conn, "sync:stripe", "a", now=later, ttl=TTL)
        assert holder_of(conn, "sync:stripe", now=later) is None


def test_the_lapsed_holder_is_named_only_once_its_lease_ran_out(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        assert lapsed_holder(conn, "segments", now=NOW) is None  # never held
        assert acquire(conn, "segments", "crashed", now=NOW, ttl=TTL)
        assert lapsed_holder(conn, "segments", now=NOW + TTL / 2) is None  # still held
        assert lapsed_holder(conn, "segments", now=NOW + TTL) == "crashed"
        release(conn, "segments", "crashed")
        assert lapsed_holder(conn, "segments", now=NOW + TTL) is None  # let go of properly


def test_jobs_give_a_source_with_its_own_cron_a_job_of_its_own() -> None:
    config = ScheduleConfig(every="*/15 * * * *", sources={"hubspot": "*/5 * * * *"}, segments="0 * * * *")
    found = jobs(config, ["stripe", "hubspot", "typeform"])
    assert found == [
        Job("sync", "*/15 * * * *", ("stripe", "typeform")),
        Job("sync:hubspot", "*/5 * * * *", ("hubspot",)),
        Job("segments", "0 * * * *", (), kind="segments"),
    ]
    assert [j.leases for j in found] == [("sync:stripe", "sync:typeform"), ("sync:hubspot",), ("segments",)]


def test_no_schedule_means_no_jobs() -> None:
    assert jobs(ScheduleConfig(), ["stripe"]) == []
    assert jobs(ScheduleConfig(sources={"hubspot": "* * * * *"}), ["stripe"]) == []


def test_next_run_follows_the_cron_expression_including_seconds() -> None:
    assert next_run("*/15 * * * *", NOW + timedelta(minutes=7)) == NOW + timedelta(minutes=15)
    assert next_run("* * * * * */10", NOW + timedelta(seconds=1)) == NOW + timedelta(seconds=10)


def test_cron_expressions_are_read_in_utc_whatever_the_zone_of_the_clock() -> None:
    paris = NOW.astimezone(ZoneInfo("Europe/Paris"))  # 13:00 there
    assert next_run("0 9 * * *", paris) == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert next_run("30 12 * * *", paris) == datetime(2026, 11, 23, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"every": "every 15 minutes"}, "expected a cron expression"),
        ({"segments": "61 * * * *"}, "expected a cron expression"),
        ({"sources": {"salesforce": "* * * * *"}}, "expected a source among stripe, hubspot, typeform"),
        ({"sources": {"stripe": "nope"}}, "expected a cron expression"),
    ],
)
def test_a_bad_schedule_says_what_was_expected(value: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScheduleConfig.model_validate(value)


def test_a_store_that_gives_up_waiting_for_a_lock_is_told_from_other_store_errors(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        assert acquire(conn, "sync:stripe", "a", now=NOW, ttl=TTL)
    with write_transaction(engine) as holding:
        # Another process's transaction, holding the row (PostgreSQL) or the write lock (SQLite).
        assert lapsed_holder(holding, "sync:stripe", now=NOW + TTL) == "a"
        with engine.connect() as waiting:
            wait = "PRAGMA busy_timeout=0" if engine.dialect.name == "sqlite" else "SET lock_timeout = '50ms'"
            waiting.exec_driver_sql(wait)
            with pytest.raises(DBAPIError) as caught:
                renew(waiting, "sync:stripe", "a", now=NOW, ttl=TTL)
            waiting.rollback()
            assert lock_wait_failed(caught.value)
            with pytest.raises(DBAPIError) as other:
                waiting.exec_driver_sql("SELECT * FROM no_such_table")
            assert not lock_wait_failed(other.value)
