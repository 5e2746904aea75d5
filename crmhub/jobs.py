"""A sync or re-evaluation run under its leases, for `crmhub sync`, the scheduler and the admin API."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from connectors import default_http_client
from connectors.exceptions import ConnectorError
from crmhub.settings import ConfigError, Settings
from crmhub.wiring import build_sources, build_sync_engine, hubspot_push
from sync.engine import ProgressCallback, RunReport, StreamReport
from sync.exceptions import SyncError
from sync.hubspot_push import PushReport
from sync.locks import acquire, holder_of, lapsed_holder, lock_wait_failed, release, take_over
from sync.locks import renew as renew_lease
from sync.runs import add_run_error, close_abandoned
from sync.schedule import Job
from sync.store import write_transaction

__all__ = ["EXPLAINED_FAILURES", "PUSH_LEASE", "JobOutcome", "StoreBusyError", "run_holder", "run_job"]

Clock = Callable[[], datetime]
log = logging.getLogger("crmhub.jobs")


class StoreBusyError(SyncError):
    """The store gave up waiting for a lock another process held (SQLite busy, PostgreSQL lock_timeout)."""

    def __init__(self) -> None:
        super().__init__(
            "the store is busy: another process (a crmhub command, crmhub serve) held its write lock "
            "longer than the busy timeout; what was stored is kept: the next run, or this command run "
            "again, goes on from there"
        )


# What a run can fail with whose message names the thing, the cause and the fix: a background
# loop logs these as one line; anything else keeps its traceback.
EXPLAINED_FAILURES: tuple[type[Exception], ...] = (ConfigError, ConnectorError, StoreBusyError, SyncError)

# The lease a HubSpot push holds: every sync job pushes when it ends, and two jobs can end together.
PUSH_LEASE = "hubspot-push"
# How often per lease_seconds the heartbeat renews a run's leases, pages or not (segment evaluation and
# the HubSpot push bring none): a renewal or two lost to a store hiccup still leaves them held.
_RENEWALS_PER_LEASE = 3


@dataclass
class JobOutcome:
    """What one run did, and which of its leases another run still held (that run overran)."""

    job: str
    report: RunReport | None = None
    pushed: PushReport | None = None
    push_error: str | None = None
    # The push's error when the configuration is at fault (exit code 2 on the command line).
    push_config_error: ConfigError | None = None
    busy: dict[str, str] = field(default_factory=dict)  # lease -> holder
    # Leases another run took while this one held them (they ran out unrenewed): lease -> that run.
    lost: dict[str, str] = field(default_factory=dict)
    push_skipped: str | None = None  # who held the push lease when this run's push gave way
    # Why this run started no HubSpot push that it would have (the process is shutting down).
    push_deferred: str | None = None


def run_holder() -> str:
    """A holder name unique to one run: host, process and a random suffix."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _died_here(holder: str) -> bool:
    """True for a holder that was a process on this host that no longer exists (killed, crashed)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname()[:40] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class _Leases:
    """The leases one run holds, renewed together; one that another run took meanwhile is lost for good."""

    def __init__(self, engine: Engine, holder: str, *, clock: Clock, ttl: timedelta) -> None:
        self.engine = engine
        self.holder = holder
        self.clock = clock
        self.ttl = ttl
        self.held: list[str] = []
        self.lost: dict[str, str] = {}
        # The run's thread and its heartbeat both come here; always this lock first, then the store's.
        self._lock = threading.Lock()

    def take(self, names: Sequence[str]) -> dict[str, str]:
        """Take each of `names` that is free, lapsed or a dead local run's; the others -> who holds them."""
        busy: dict[str, str] = {}
        orphans: dict[str, str] = {}  # lease -> the holder that never let go of it
        with self._lock, write_transaction(self.engine) as conn:
            now = self.clock()
            for name in names:
                other, dead = self._take(conn, name, now=now)
                if other is not None:
                    busy[name] = other
                elif dead is not None and dead != self.holder:
                    orphans[name] = dead
            _close_runs_left(conn, orphans, holder=self.holder, now=now)
        taken = [name for name in names if name not in busy]
        if taken:
            log.info("%s took %s", self.holder, ", ".join(taken))
        return busy

    def _take(self, conn: Connection, name: str, *, now: datetime) -> tuple[str | None, str | None]:
        """Take `name`: (None, the last holder if it never let go of it), or (who holds it, None)."""
        lapsed = lapsed_holder(conn, name, now=now)
        if acquire(conn, name, self.holder, now=now, ttl=self.ttl):
            self.held.append(name)
            return None, lapsed
        other = holder_of(conn, name, now=now) or "another run"
        if _died_here(other) and take_over(conn, name, other, self.holder, now=now, ttl=self.ttl):
            self.held.append(name)
            return None, other
        return other, None

    def renew(self) -> bool:
        """Renew every lease still held; False once one has been lost to another run."""
        with self._lock, write_transaction(self.engine) as conn:
            now = self.clock()
            for name in list(self.held):
                if renew_lease(conn, name, self.holder, now=now, ttl=self.ttl):
                    continue
                self.held.remove(name)
                self.lost[name] = holder_of(conn, name, now=now) or "a run that has since let go of it"
                log.warning(
                    "%s lost %s to %s: it ran out before this run renewed it; this run stops at its "
                    "next page boundary and starts no HubSpot push",
                    self.holder,
                    name,
                    self.lost[name],
                )
        return not self.lost

    def give_back(self) -> None:
        """Release every lease still held."""
        with self._lock, write_transaction(self.engine) as conn:
            for name in self.held:
                release(conn, name, self.holder)
        if self.held:
            log.info("%s released %s", self.holder, ", ".join(self.held))


def _close_runs_left(conn: Connection, orphans: Mapping[str, str], *, holder: str, now: datetime) -> None:
    """Close the runs that the dead last holders of `orphans` (lease -> holder) left running.

    Only theirs, by the holder each run recorded: a live run of another process is never closed,
    whatever it pulls (a push leaves no run to close).
    """
    covering = {name: dead for name, dead in orphans.items() if name != PUSH_LEASE}
    if not covering:
        return
    sources = [name.removeprefix("sync:") for name in covering if name.startswith("sync:")]
    dead = sorted(set(covering.values()))
    closed = close_abandoned(conn, dead, sources, now=now)
    log.warning(
        "%s closed runs %s of %s, which died or let %s lapse",
        holder,
        closed,
        ", ".join(dead),
        ", ".join(covering),
    )


@contextmanager
def _heartbeat(renew_all: Callable[[], object], *, every: float) -> Iterator[None]:
    """Call `renew_all` every `every` seconds on a thread of its own while the block runs."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            try:
                renew_all()
            except SQLAlchemyError as exc:
                # A store hiccup: the next beats come well before the lease runs out.
                log.warning("lease renewal failed, trying again in %.0f s: %s", every, exc)

    thread = threading.Thread(target=beat, name="crmhub-lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run_job(
    settings: Settings,
    engine: Engine,
    job: Job,
    *,
    clock: Clock,
    trigger: str,
    full: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: ProgressCallback | None = None,
    environ: Mapping[str, str] | None = None,
) -> JobOutcome:
    """Run `job` for what its leases allow; a source whose lease another run holds is skipped and named.

    A lease this run loses to another (it ran out unrenewed) stops the run at its next page boundary
    and skips the push; `JobOutcome.lost` names it. A store that stayed locked by another process
    raises `StoreBusyError` (the run is closed as failed; what it stored is kept).
    """
    try:
        return _run_job(
            settings,
            engine,
            job,
            clock=clock,
            trigger=trigger,
            full=full,
            should_stop=should_stop,
            on_progress=on_progress,
            environ=environ,
        )
    except DBAPIError as exc:
        if not lock_wait_failed(exc):
            raise
        # From None: SQLAlchemy's text, in a chained traceback, carries the statement's parameters.
        raise StoreBusyError() from None


def _run_job(
    settings: Settings,
    engine: Engine,
    job: Job,
    *,
    clock: Clock,
    trigger: str,
    full: bool,
    should_stop: Callable[[], bool],
    on_progress: ProgressCallback | None,
    environ: Mapping[str, str] | None,
) -> JobOutcome:
    """`run_job`, the store's errors as they come."""
    ttl = timedelta(seconds=settings.sync.schedule.lease_seconds)
    leases = _Leases(engine, run_holder(), clock=clock, ttl=ttl)
    outcome = JobOutcome(job=job.name)
    outcome.busy = leases.take(job.leases)
    if outcome.busy and not leases.held:
        return outcome
    try:
        # Pages renew the leases as they come; the heartbeat covers the stretches without pages.
        with _heartbeat(leases.renew, every=ttl.total_seconds() / _RENEWALS_PER_LEASE):
            _run(
                settings,
                engine,
                job,
                leases,
                outcome,
                trigger=trigger,
                full=full,
                should_stop=should_stop,
                on_progress=on_progress,
                environ=environ,
            )
    finally:
        leases.give_back()
        outcome.lost = dict(leases.lost)
    return outcome


def _run(
    settings: Settings,
    engine: Engine,
    job: Job,
    leases: _Leases,
    outcome: JobOutcome,
    *,
    trigger: str,
    full: bool,
    should_stop: Callable[[], bool],
    on_progress: ProgressCallback | None,
    environ: Mapping[str, str] | None,
) -> None:
    """Pull the sources whose leases this run holds, evaluate, then push."""
    names = [s for s in job.sources if f"sync:{s}" in leases.held]

    def progress(stream: StreamReport) -> None:
        # Renewing after every page keeps a long run's leases while a crashed run's expire.
        leases.renew()
        if on_progress is not None:
            on_progress(stream)

    def stop() -> bool:
        # Another run has the lost source now: going on would pull it twice and move its cursor back.
        return bool(leases.lost) or should_stop()

    with default_http_client(settings.connectors) as http:
        sources = build_sources(settings, names, http, environ)
        sync_engine = build_sync_engine(settings, engine, sources)
        now = leases.clock()
        # The clock goes along: the segments are evaluated when the pull is over, not at its start.
        report = sync_engine.run(
            sources,
            now=now,
            clock=leases.clock,
            full=full,
            trigger=trigger,
            on_progress=progress,
            should_stop=stop,
            holder=leases.holder,
        )
        outcome.report = report
        if report.stopped and leases.lost:
            _note_lost(engine, report.run_id, leases.lost)
        if job.kind == "sync":
            _push(settings, engine, http, leases, outcome, now=now, should_stop=should_stop, environ=environ)


def _note_lost(engine: Engine, run_id: int, lost: Mapping[str, str]) -> None:
    """Say in the run's row why it stopped: `crmhub sources` shows it."""
    taken = ", ".join(f"{name} to {holder}" for name, holder in lost.items())
    with write_transaction(engine) as conn:
        add_run_error(
            conn,
            run_id,
            f"stopped: lost {taken}, whose lease ran out before this run renewed it (the process "
            "stalled, the store was out of reach or the hosts' clocks differ by more than "
            "[sync.schedule] lease_seconds)",
        )


def _push(
    settings: Settings,
    engine: Engine,
    http: httpx.Client,
    leases: _Leases,
    outcome: JobOutcome,
    *,
    now: datetime,
    should_stop: Callable[[], bool],
    environ: Mapping[str, str] | None,
) -> None:
    """Push to HubSpot under the push lease, unless this run lost a lease or another run is pushing."""
    if not settings.field_mapping.hubspot.push:
        return  # hubspot_push would do nothing: no lease to take
    if should_stop():
        # Shutting down: a push can take minutes, past the shutdown's grace; what it would send is
        # above its cursor still, and the next run's push sends it.
        outcome.push_deferred = "not started, as the process is shutting down; the next run pushes"
        log.info("%s skipped the hubspot push: shutting down, the next run pushes", leases.holder)
        return
    if not leases.renew():
        return  # the run that took the lease pushes when it ends
    holder = leases.take([PUSH_LEASE]).get(PUSH_LEASE)
    if holder is not None:
        outcome.push_skipped = holder
        log.info("%s skipped the hubspot push: %s is pushing", leases.holder, holder)
        return
    pulled = outcome.report.streams if outcome.report is not None else []
    failed = next((s.error for s in pulled if s.source == "hubspot" and s.error), None)
    if failed is not None:
        # The same HubSpot would refuse the push or keep it retrying: the next run pushes.
        outcome.push_error = f"not tried, as this run's HubSpot pull failed ({failed}); the next run pushes"
        return
    try:
        outcome.pushed = hubspot_push(settings, engine, http, now=now, environ=environ)
    except DBAPIError as exc:
        if not lock_wait_failed(exc):
            raise
        _push_failed(outcome, StoreBusyError())
    except (ConnectorError, SyncError, ConfigError) as exc:
        _push_failed(outcome, exc)


def _push_failed(outcome: JobOutcome, exc: ConnectorError | SyncError | ConfigError) -> None:
    """Record an explained push failure on the outcome, logged on one line."""
    # The pull is stored and reported all the same; the push resumes on the next run (once a
    # configuration problem, such as its unset HubSpot token, is fixed).
    outcome.push_error = str(exc).replace("\n", "; ")
    outcome.push_config_error = exc if isinstance(exc, ConfigError) else None
    log.warning("hubspot push: %s", outcome.push_error)
