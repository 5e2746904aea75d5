"""A sync or re-evaluation run under its leases, for `crmhub sync`, the scheduler and the admin API."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from connectors import default_http_client
from connectors.exceptions import ConnectorError
from crmhub.settings import ConfigError, Settings
from crmhub.wiring import build_sources, build_sync_engine, hubspot_push
from sync.engine import ProgressCallback, RunReport, StreamReport
from sync.exceptions import SyncError
from sync.hubspot_push import PushReport
from sync.locks import acquire, holder_of, release, take_over
from sync.runs import close_abandoned
from sync.schedule import Job
from sync.store import write_transaction

__all__ = ["EXPLAINED_FAILURES", "JobOutcome", "run_holder", "run_job"]

Clock = Callable[[], datetime]
log = logging.getLogger("crmhub.jobs")

# What a run can fail with whose message names the thing, the cause and the fix: a background
# loop logs these as one line; anything else keeps its traceback.
EXPLAINED_FAILURES: tuple[type[Exception], ...] = (ConfigError, ConnectorError, SyncError)


@dataclass
class JobOutcome:
    """What one run did, and which of its leases another run still held (that run overran)."""

    job: str
    report: RunReport | None = None
    pushed: PushReport | None = None
    push_error: str | None = None
    busy: dict[str, str] = field(default_factory=dict)  # lease -> holder


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
    """Run `job` for what its leases allow; a source whose lease another run holds is skipped and named."""
    holder = run_holder()
    ttl = timedelta(seconds=settings.sync.schedule.lease_seconds)
    outcome = JobOutcome(job=job.name)
    taken: list[str] = []
    orphaned: list[str] = []  # sources whose lease a dead process on this host still held
    with write_transaction(engine) as conn:
        now = clock()
        for lease in job.leases:
            if acquire(conn, lease, holder, now=now, ttl=ttl):
                taken.append(lease)
                continue
            other = holder_of(conn, lease, now=now) or "another run"
            if _died_here(other) and take_over(conn, lease, other, holder, now=now, ttl=ttl):
                taken.append(lease)
                if lease.startswith("sync:"):
                    orphaned.append(lease.removeprefix("sync:"))
            else:
                outcome.busy[lease] = other
        if orphaned:
            closed = close_abandoned(conn, orphaned, now=now)
            log.warning("%s closed runs %s of a process that died holding %s", holder, closed, orphaned)
    if taken:
        log.info("%s took %s", holder, ", ".join(taken))
    try:
        names = [s for s in job.sources if f"sync:{s}" in taken]
        if outcome.busy and not taken:
            return outcome

        def progress(stream: StreamReport) -> None:
            # Renewing after every page keeps a long run's leases while a crashed run's expire.
            with write_transaction(engine) as conn:
                for lease in taken:
                    acquire(conn, lease, holder, now=clock(), ttl=ttl)
            if on_progress is not None:
                on_progress(stream)

        sync_engine = build_sync_engine(settings, engine)
        with default_http_client(settings.connectors) as http:
            sources = build_sources(settings, names, http, environ)
            now = clock()
            outcome.report = sync_engine.run(
                sources, now=now, full=full, trigger=trigger, on_progress=progress, should_stop=should_stop
            )
            if job.kind == "sync":
                try:
                    outcome.pushed = hubspot_push(settings, engine, http, now=now, environ=environ)
                except (ConnectorError, SyncError) as exc:
                    # The pull is stored and reported all the same; the push resumes on the next run.
                    # (A ConfigError still ends the command: the configuration needs fixing first.)
                    outcome.push_error = str(exc)
                    log.warning("hubspot push: %s", exc)
    finally:
        with write_transaction(engine) as conn:
            for lease in taken:
                release(conn, lease, holder)
        if taken:
            log.info("%s released %s", holder, ", ".join(taken))
    return outcome
