"""A run under its leases: it stops on losing one, pushes under a lease of its own, closes dead runs."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import OperationalError

from connectors import Batch, Record
from connectors.base import Source, Stream
from connectors.exceptions import PermanentError
from crmhub import jobs, wiring
from crmhub.settings import ConfigError, Problem, Settings
from field_mapping.config import FieldMappingConfig, HubSpotPushConfig
from sync.engine import BatchResult, StreamReport, SyncEngine
from sync.hubspot_push import PushReport
from sync.locks import acquire, holder_of
from sync.runs import load_cursor, start_run
from sync.schedule import Job, ScheduleConfig, SyncConfig
from sync.segments import EvaluationReport
from sync.store import write_transaction
from sync.store.tables import locks, records, segments, sync_runs
from tests.segments.conftest import segments_from

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LEASE_SECONDS = 10
TTL = timedelta(seconds=LEASE_SECONDS)
PAGES = 4
STRIPE = Job("sync", "*/15 * * * *", ("stripe",))


@dataclass
class Clock:
    """A clock that moves only when a test moves it."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


class Customers(Stream):
    """Pages of one customer each; the cursor is the number of the next page."""

    source = "stripe"
    name = "customers"

    def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
        for page in range(int(cursor or 0), PAGES):
            payload = {"id": f"cus_{page}", "email": f"person{page}@example.com"}
            record = Record("stripe", "customers", f"cus_{page}", now, payload)
            yield Batch("stripe", "customers", [record], cursor=str(page + 1))


class Stripe(Source):
    name = "stripe"

    @property
    def streams(self) -> list[Stream]:
        return [Customers()]


@dataclass
class Pushes:
    """Stands in for `hubspot_push`: counts calls and runs `during` inside each one."""

    calls: int = 0
    during: list[Any] = field(default_factory=list)

    def __call__(
        self,
        settings: Settings,
        engine: Engine,
        http: httpx.Client,
        *,
        now: datetime,
        environ: Mapping[str, str] | None = None,
    ) -> PushReport:
        self.calls += 1
        for step in self.during:
            step()
        return PushReport()


@pytest.fixture
def pushes(monkeypatch: pytest.MonkeyPatch) -> Pushes:
    fake = Pushes()
    monkeypatch.setattr(jobs, "hubspot_push", fake)
    monkeypatch.setattr(jobs, "build_sources", lambda settings, names, http, environ: [Stripe()])
    return fake


def _settings() -> Settings:
    return Settings(
        field_mapping=FieldMappingConfig(hubspot=HubSpotPushConfig(push=True)),
        sync=SyncConfig(schedule=ScheduleConfig(lease_seconds=LEASE_SECONDS)),
    )


def _run(engine: Engine, clock: Clock, **kwargs: Any) -> jobs.JobOutcome:
    return jobs.run_job(_settings(), engine, STRIPE, clock=clock, trigger="schedule", **kwargs)


def _steal(engine: Engine, clock: Clock, name: str = "sync:stripe", conn: Connection | None = None) -> None:
    """What another host does once this run's lease has run out unrenewed: take it."""
    clock.now += TTL
    if conn is None:
        with write_transaction(engine) as own:
            assert acquire(own, name, "other-host:1:thief", now=clock.now, ttl=TTL)
    else:
        assert acquire(conn, name, "other-host:1:thief", now=clock.now, ttl=TTL)


def _run_row(engine: Engine, run_id: int) -> tuple[str, str | None]:
    with engine.connect() as conn:
        status, error = conn.execute(
            select(sync_runs.c.status, sync_runs.c.error).where(sync_runs.c.id == run_id)
        ).one()
    return status, error


def _holder_of_stripe(engine: Engine, clock: Clock) -> str | None:
    with engine.connect() as conn:
        return holder_of(conn, "sync:stripe", now=clock.now)


def test_a_run_that_loses_its_lease_stops_at_the_next_page_boundary_and_does_not_push(
    engine: Engine, pushes: Pushes, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()

    def steal_after_the_first_page(stream: StreamReport) -> None:
        if stream.pages == 1:
            _steal(engine, clock)  # while the second page is on its way

    with caplog.at_level(logging.WARNING, logger="crmhub.jobs"):
        outcome = _run(engine, clock, on_progress=steal_after_the_first_page)
    assert outcome.lost == {"sync:stripe": "other-host:1:thief"}
    assert outcome.report is not None and outcome.report.stopped
    assert pushes.calls == 0 and outcome.pushed is None
    with engine.connect() as conn:
        stored = conn.execute(select(records.c.external_id)).scalars().all()
        cursor = load_cursor(conn, "stripe", "customers")
    # The page in flight when the lease went is kept with its cursor; no page after it.
    assert sorted(stored) == ["cus_0", "cus_1"] and cursor == "2"
    status, error = _run_row(engine, outcome.report.run_id)
    assert status == "stopped" and error is not None
    assert error.startswith("stopped: lost sync:stripe to other-host:1:thief")
    assert "lost sync:stripe to other-host:1:thief" in caplog.text and "Traceback" not in caplog.text
    assert _holder_of_stripe(engine, clock) == "other-host:1:thief"  # not released from under the thief


def test_a_lease_lost_during_the_evaluation_skips_the_push(
    engine: Engine, pushes: Pushes, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    build = wiring.build_sync_engine

    def stealing_engine(settings: Settings, store: Engine, sources: Sequence[Source]) -> SyncEngine:
        sync_engine = build(settings, store, sources)
        evaluate = sync_engine.evaluate
        assert evaluate is not None

        def slow_evaluation(
            conn: Connection, *, now: datetime, run_id: int | None, contact_ids: Collection[int] | None
        ) -> EvaluationReport:
            _steal(store, clock, conn=conn)  # the evaluation outlasted the lease
            return evaluate(conn, now=now, run_id=run_id, contact_ids=contact_ids)

        sync_engine.evaluate = slow_evaluation
        return sync_engine

    monkeypatch.setattr(jobs, "build_sync_engine", stealing_engine)
    outcome = _run(engine, clock)
    assert outcome.report is not None and outcome.report.status == "succeeded"  # the pull was done
    assert outcome.lost == {"sync:stripe": "other-host:1:thief"}
    assert pushes.calls == 0


def test_a_push_gives_way_to_another_push_holding_its_lease(
    engine: Engine, pushes: Pushes, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    with write_transaction(engine) as conn:
        assert acquire(conn, jobs.PUSH_LEASE, "other-host:1:pusher", now=NOW, ttl=TTL)
    with caplog.at_level(logging.INFO, logger="crmhub.jobs"):
        outcome = _run(engine, clock)
    assert pushes.calls == 0
    assert outcome.push_skipped == "other-host:1:pusher" and outcome.pushed is None
    assert "skipped the hubspot push: other-host:1:pusher is pushing" in caplog.text
    assert outcome.report is not None and outcome.report.status == "succeeded"
    with engine.connect() as conn:
        assert holder_of(conn, jobs.PUSH_LEASE, now=NOW) == "other-host:1:pusher"


def test_a_push_the_configuration_cannot_make_leaves_the_pulls_report_and_says_why(
    engine: Engine, pushes: Pushes
) -> None:
    def unset_token() -> None:
        problem = Problem("connectors.hubspot.api_key_env", "expected HUBSPOT_ACCESS_TOKEN, found it unset")
        raise ConfigError([problem])

    pushes.during.append(unset_token)
    outcome = _run(engine, Clock())
    # `crmhub sync --source stripe` with push on but no HubSpot token: the Stripe pull is stored and shown.
    assert outcome.report is not None and outcome.report.status == "succeeded"
    assert (
        outcome.push_error == "connectors.hubspot.api_key_env: expected HUBSPOT_ACCESS_TOKEN, found it unset"
    )
    assert isinstance(outcome.push_config_error, ConfigError)  # the command's exit code 2


class _Refused(Stream):
    source = "hubspot"
    name = "contacts"

    def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
        raise PermanentError("hubspot: authentication failed (401): check connectors.hubspot.api_key_env")
        yield  # a generator, as every stream's pull is


class _HubSpot(Source):
    name = "hubspot"

    @property
    def streams(self) -> list[Stream]:
        return [_Refused()]


def test_no_push_is_tried_after_the_hubspot_pull_of_the_run_failed(
    engine: Engine, pushes: Pushes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "build_sources", lambda settings, names, http, environ: [Stripe(), _HubSpot()])
    both = Job("sync", "*/15 * * * *", ("stripe", "hubspot"))
    outcome = jobs.run_job(_settings(), engine, both, clock=Clock(), trigger="schedule")
    assert pushes.calls == 0
    assert outcome.push_error is not None and outcome.push_error.startswith(
        "not tried, as this run's HubSpot pull failed (hubspot: authentication failed (401)"
    )


def test_a_push_holds_its_own_lease_while_it_runs_and_gives_it_back(engine: Engine, pushes: Pushes) -> None:
    clock = Clock()
    seen: list[str | None] = []

    def look() -> None:
        with engine.connect() as conn:
            seen.append(holder_of(conn, jobs.PUSH_LEASE, now=clock.now))

    pushes.during.append(look)
    outcome = _run(engine, clock)
    assert pushes.calls == 1 and outcome.pushed is not None and outcome.push_skipped is None
    [holder] = seen
    assert holder is not None and holder.startswith(jobs.run_holder().rsplit(":", 1)[0])
    with engine.connect() as conn:
        assert holder_of(conn, jobs.PUSH_LEASE, now=clock.now) is None


def test_a_run_renews_its_leases_while_a_long_push_runs(
    engine: Engine, pushes: Pushes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "_RENEWALS_PER_LEASE", 1_000)  # every 10 ms, not every 3.3 s
    clock = Clock()

    def outlast_the_lease() -> None:
        clock.now += 2 * TTL
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                held = (
                    conn.execute(select(locks.c.name).where(locks.c.expires_at > clock.now)).scalars().all()
                )
            if sorted(held) == [jobs.PUSH_LEASE, "sync:stripe"]:
                return
            time.sleep(0.01)
        pytest.fail("the leases were not renewed during the push")

    pushes.during.append(outlast_the_lease)
    outcome = _run(engine, clock)
    assert pushes.calls == 1 and outcome.lost == {}


def test_taking_a_lease_that_ran_out_closes_the_runs_its_holder_left_running(
    engine: Engine, pushes: Pushes
) -> None:
    clock = Clock()
    crashed_at = NOW - 3 * TTL
    dead = "other-host:4242:deadbeef"
    with write_transaction(engine) as conn:
        # A run on another host that crashed (or whose PID was reused): only its lease's expiry lets go.
        abandoned = start_run(conn, source="stripe", trigger="schedule", now=crashed_at, holder=dead)
        # Begun before runs recorded their holder (migration 0016): known by the lease's source alone.
        older = start_run(conn, source="stripe", trigger="schedule", now=crashed_at - TTL)
        assert acquire(conn, "sync:stripe", dead, now=crashed_at, ttl=TTL)
    outcome = _run(engine, clock)
    assert outcome.busy == {}
    for run_id in (abandoned, older):
        status, error = _run_row(engine, run_id)
        assert status == "interrupted" and error is not None and error.startswith("abandoned:")
    assert outcome.report is not None
    assert _run_row(engine, outcome.report.run_id)[0] == "succeeded"


def test_taking_the_segments_lease_from_a_dead_holder_leaves_a_live_sync_of_every_source_running(
    engine: Engine, pushes: Pushes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reviewer's case: a segments job whose last holder died takes its lease while a `crmhub
    # sync` over every source (source NULL) runs in another process. Closed, that sync no longer held
    # the segment cut back, which moved past its start and skipped the contacts it stored after.
    monkeypatch.setattr(jobs, "build_sources", lambda settings, names, http, environ: [])
    clock = Clock()
    crashed_at = NOW - 3 * TTL
    dead, alive = "other-host:4242:deadbeef", "other-host:77:alive"
    with write_transaction(engine) as conn:
        abandoned = start_run(conn, source=None, trigger="schedule", now=crashed_at, holder=dead)
        assert acquire(conn, "segments", dead, now=crashed_at, ttl=TTL)
        live = start_run(conn, source=None, trigger="manual", now=NOW - timedelta(minutes=1), holder=alive)
        for lease in ("sync:stripe", "sync:hubspot"):
            assert acquire(conn, lease, alive, now=NOW, ttl=TTL)
    segments_job = Job("segments", "0 * * * *", (), kind="segments")
    outcome = jobs.run_job(_settings(), engine, segments_job, clock=clock, trigger="schedule")
    assert outcome.busy == {} and outcome.report is not None
    assert _run_row(engine, abandoned)[0] == "interrupted"
    assert _run_row(engine, live) == ("running", None)
    with engine.connect() as conn:
        holders = {
            run_id: holder for run_id, holder in conn.execute(select(sync_runs.c.id, sync_runs.c.holder))
        }
    assert holders[outcome.report.run_id] is not None and holders[outcome.report.run_id] != dead


def test_a_lease_still_held_leaves_its_holders_runs_alone(engine: Engine, pushes: Pushes) -> None:
    clock = Clock()
    with write_transaction(engine) as conn:
        going = start_run(conn, source="stripe", trigger="schedule", now=NOW - timedelta(seconds=5))
        assert acquire(conn, "sync:stripe", "other-host:4242:alive", now=NOW, ttl=TTL)
    outcome = _run(engine, clock)
    assert outcome.busy == {"sync:stripe": "other-host:4242:alive"} and outcome.report is None
    assert _run_row(engine, going) == ("running", None)


def test_a_run_evaluates_segments_at_the_clock_once_its_pull_is_over(engine: Engine, pushes: Pushes) -> None:
    clock = Clock()
    paid = {"paid7": {"name": "Paid", "all": [{"event": "invoice.paid", "within": "7d"}]}}
    settings = _settings().model_copy(update={"segments": segments_from(paid)})

    def time_passes(stream: StreamReport) -> None:
        if stream.pages == 1:
            clock.now += timedelta(minutes=10)  # a long pull; webhooks evaluated meanwhile saw later times

    outcome = jobs.run_job(settings, engine, STRIPE, clock=clock, trigger="schedule", on_progress=time_passes)
    assert outcome.report is not None and outcome.report.evaluation is not None
    assert outcome.report.evaluation.now == NOW + timedelta(minutes=10)
    with engine.connect() as conn:
        started = select(sync_runs.c.started_at).where(sync_runs.c.id == outcome.report.run_id)
        assert conn.execute(started).scalar_one() == NOW  # its data keeps the run's start
        assert conn.execute(select(segments.c.last_evaluated_at)).scalar_one() == NOW + timedelta(minutes=10)


def test_the_heartbeat_renews_until_its_block_ends() -> None:
    beats: list[float] = []
    three = threading.Event()

    def renew() -> None:
        beats.append(time.monotonic())
        if len(beats) == 3:
            three.set()

    with jobs._heartbeat(renew, every=0.001):
        assert three.wait(10)
    after = len(beats)
    time.sleep(0.01)
    assert len(beats) == after  # the thread ended with the block


def test_a_run_stopped_because_the_server_is_shutting_down_starts_no_push(
    engine: Engine, pushes: Pushes, caplog: pytest.LogCaptureFixture
) -> None:
    stopping = threading.Event()

    def sigterm_after_the_first_page(stream: StreamReport) -> None:
        if stream.pages == 1:
            stopping.set()  # what `crmhub serve` does on SIGTERM

    with caplog.at_level(logging.INFO, logger="crmhub.jobs"):
        outcome = _run(engine, Clock(), on_progress=sigterm_after_the_first_page, should_stop=stopping.is_set)
    assert outcome.report is not None and outcome.report.stopped
    # A push can take minutes, well past the shutdown's grace; the next run's push sends it all.
    assert pushes.calls == 0 and outcome.pushed is None and outcome.push_error is None
    assert outcome.push_deferred == "not started, as the process is shutting down; the next run pushes"
    assert "skipped the hubspot push: shutting down" in caplog.text
    with engine.connect() as conn:
        assert holder_of(conn, jobs.PUSH_LEASE, now=NOW) is None  # not even taken


def _database_is_locked(tmp_path: Path) -> sqlite3.OperationalError:
    """The error SQLite raises when another connection keeps its write lock past the busy timeout."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="database is locked") as caught:
            waiter.execute("BEGIN IMMEDIATE")
        return caught.value
    finally:
        waiter.close()
        holder.close()


def _locked_statement(tmp_path: Path) -> OperationalError:
    """SQLAlchemy's wrapper of it: its text holds the statement and its parameters."""
    return OperationalError(
        "UPDATE contacts SET changed_at=? WHERE email = ?",
        ("2026-11-23", "someone@example.com"),
        _database_is_locked(tmp_path),
    )


def test_a_push_the_busy_store_failed_is_one_explained_line_without_the_statement(
    engine: Engine, pushes: Pushes, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    locked = _locked_statement(tmp_path)

    def busy_store() -> None:
        raise locked

    pushes.during.append(busy_store)
    with caplog.at_level(logging.INFO, logger="crmhub.jobs"):
        outcome = _run(engine, Clock())
    assert outcome.report is not None and outcome.report.status == "succeeded"  # the pull is stored
    assert outcome.push_error == (
        "the store is busy: another process (a crmhub command, crmhub serve) held its write lock longer "
        "than the busy timeout; what was stored is kept: the next run, or this command run again, goes on "
        "from there"
    )
    assert outcome.push_config_error is None
    assert "hubspot push: the store is busy" in caplog.text
    assert "someone@example.com" not in caplog.text and "UPDATE" not in caplog.text
    assert "Traceback" not in caplog.text


def test_a_sync_the_busy_store_failed_raises_an_explained_failure_and_closes_its_run(
    engine: Engine, pushes: Pushes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    locked = _locked_statement(tmp_path)
    build = wiring.build_sync_engine

    def locked_out(settings: Settings, store: Engine, sources: Sequence[Source]) -> SyncEngine:
        sync_engine = build(settings, store, sources)

        def store_batch(conn: Connection, batch: Batch, *, run_id: int, now: datetime) -> BatchResult:
            raise locked  # another process held the write lock for 25 s

        sync_engine.store_batch = store_batch
        return sync_engine

    monkeypatch.setattr(jobs, "build_sync_engine", locked_out)
    with pytest.raises(jobs.StoreBusyError) as caught:
        _run(engine, Clock())
    # What the scheduler logs as one line, with no traceback and no statement parameters.
    assert isinstance(caught.value, jobs.EXPLAINED_FAILURES)
    assert str(caught.value).startswith(
        "the store is busy: another process (a crmhub command, crmhub serve) held its"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert pushes.calls == 0
    with engine.connect() as conn:
        [(status, error)] = conn.execute(select(sync_runs.c.status, sync_runs.c.error)).all()
        leases = conn.execute(select(locks.c.name)).scalars().all()
    assert (status, error) == ("failed", "OperationalError: database is locked")
    assert leases == []  # given back
