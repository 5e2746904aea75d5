"""The sync engine: pull every stream, store each page and its cursor in one transaction.

A page is stored, mapped and resolved to contacts in one transaction that also saves the stream's
cursor, so a crash at any point loses at most the page in flight, and the next run pulls it again
from the last saved cursor. Sources are fetched side by side, one thread each, and their pages
stored here by one writer. One failing source or stream does not stop the others; the report says
which failed and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from connectors import Batch
from connectors.base import Source, Stream
from connectors.exceptions import ConnectorError
from sync.group_commit import GroupCommit, Pushed
from sync.inbound import AlreadyReceivedError, claim_events, prune_claims
from sync.locks import serialize_evaluation
from sync.prefetch import merged
from sync.runs import error_text, finish_run, load_cursor, save_cursor, start_run
from sync.store import write_transaction
from sync.store.statistics import refresh_statistics

if TYPE_CHECKING:
    from sync.segments import EvaluationReport

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """What storing one page did."""

    records: int = 0
    events: int = 0
    quarantined: int = 0
    problems: int = 0
    widenings: list[str] = field(default_factory=list)
    contacts: set[int] = field(default_factory=set)
    evaluation: EvaluationReport | None = None


class BatchStore(Protocol):
    """Stores one page inside the caller's transaction."""

    def __call__(self, conn: Connection, batch: Batch, *, run_id: int, now: datetime) -> BatchResult:
        """Store `batch`; the caller commits it with the cursor."""


class Evaluate(Protocol):
    """Recomputes lead scores and segment membership inside the caller's transaction."""

    def __call__(
        self, conn: Connection, *, now: datetime, run_id: int | None, contact_ids: Collection[int] | None
    ) -> EvaluationReport:
        """Evaluate every segment (only for `contact_ids`, when given); write transitions and outbox rows."""


@dataclass
class StreamReport:
    """How one stream's pull went."""

    source: str
    stream: str
    records: int = 0
    events: int = 0
    quarantined: int = 0
    problems: int = 0
    widenings: list[str] = field(default_factory=list)
    requests: int = 0
    pages: int = 0
    seconds: float = 0.0
    full: bool = False
    fallback_reason: str | None = None
    error: str | None = None

    @property
    def rate(self) -> float:
        """Records per second over the stream's wall time."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RunReport:
    """How a whole run went."""

    run_id: int
    streams: list[StreamReport] = field(default_factory=list)
    contacts: set[int] = field(default_factory=set)
    stopped: bool = False
    evaluation: EvaluationReport | None = None
    # Wall time of the pull, every stream side by side (the streams' own seconds overlap).
    pull_seconds: float = 0.0

    @property
    def failed(self) -> list[StreamReport]:
        """Streams that ended in an error."""
        return [s for s in self.streams if s.error]

    @property
    def status(self) -> str:
        """succeeded, partial (some streams failed) or failed (all did)."""
        if not self.failed:
            return "succeeded"
        return "failed" if len(self.failed) == len(self.streams) else "partial"


# Called with each stream's report: once for every stream before any page, then after each page
# it stores and when it ends.
ProgressCallback = Callable[[StreamReport], None]


class SyncEngine:
    """Runs syncs against one store with one way of storing pages."""

    def __init__(self, engine: Engine, store_batch: BatchStore, evaluate: Evaluate | None = None) -> None:
        self.engine = engine
        self.store_batch = store_batch
        self.evaluate = evaluate
        self._pushed = GroupCommit(self._commit_pushed)

    def run(
        self,
        sources: Sequence[Source],
        *,
        now: datetime,
        clock: Callable[[], datetime] | None = None,
        full: bool = False,
        trigger: str = "manual",
        on_progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        streams: Collection[str] | None = None,
        holder: str | None = None,
    ) -> RunReport:
        """Pull every stream of every source once (or only `streams`, as "source.stream").

        `now` is the run's start: its pages are stored at it. The segments are evaluated at `clock()`,
        read once the pull is over (at `now` without a clock). Stops early, at a page boundary, when
        `should_stop()` turns true. `holder` is the lease holder the run is under, recorded on its run.
        A run that raises is closed as failed, with the error, and the error goes on; Ctrl-C
        (KeyboardInterrupt) leaves it `running` for the command to close as interrupted.
        """
        only = sources[0].name if len(sources) == 1 else None
        began = time.perf_counter()
        with write_transaction(self.engine) as conn:
            run_id = start_run(conn, source=only, trigger=trigger, now=now, holder=holder)
        report = RunReport(run_id=run_id)
        try:
            self._run(sources, streams, report, now, clock, full, on_progress, should_stop, began)
        except Exception as exc:
            # Left `running`, the run would hold the segment cuts and the HubSpot push's cursor back
            # (sync.runs.earliest_storing_start) until it aged out, and `crmhub sources` would show it going.
            self._close_failed(report, exc, now=now, began=began)
            raise
        return report

    def _run(
        self,
        sources: Sequence[Source],
        streams: Collection[str] | None,
        report: RunReport,
        now: datetime,
        clock: Callable[[], datetime] | None,
        full: bool,
        on_progress: ProgressCallback | None,
        should_stop: Callable[[], bool],
        began: float,
    ) -> None:
        """The run inside its record: pull, evaluate, then close the record with the outcome."""
        run_id = report.run_id
        if not should_stop():
            started = time.perf_counter()
            try:
                self._pull(sources, streams, report, run_id, now, full, on_progress, should_stop)
            finally:
                report.pull_seconds = time.perf_counter() - started
        else:
            report.stopped = True
        with write_transaction(self.engine) as conn:
            refresh_statistics(conn, rows_written=sum(s.records for s in report.streams))
            prune_claims(conn, now=now)
            # Segments follow the data on every run, and time-window ones move with `now` alone.
            if self.evaluate is not None:
                # At the time of the evaluation, not the run's start: a webhook evaluated during the
                # pull saw a later moment, and this run must not undo it. The lock first, then the
                # clock: every evaluation that had its turn before this one is earlier than `at`.
                serialize_evaluation(conn)
                at = now if clock is None else max(now, clock())
                report.evaluation = self.evaluate(conn, now=at, run_id=run_id, contact_ids=None)
            finish_run(
                conn,
                run_id,
                status="stopped" if report.stopped else report.status,
                stats=_run_stats(report),
                error="; ".join(f"{s.source}.{s.stream}: {s.error}" for s in report.failed) or None,
                now=_later(now, began),
            )

    def _close_failed(self, report: RunReport, exc: Exception, *, now: datetime, began: float) -> None:
        """Close the run as failed with `exc`, in a transaction of its own (the failed one rolled back)."""
        try:
            with write_transaction(self.engine) as conn:
                finish_run(
                    conn,
                    report.run_id,
                    status="failed",
                    stats=_run_stats(report),
                    error=error_text(exc),
                    now=_later(now, began),
                )
        except SQLAlchemyError as store_error:
            # The run's own error says more; its record stays `running` until it ages out.
            log.warning("sync run %s not closed as failed: %s", report.run_id, error_text(store_error))

    def ingest(
        self, batch: Batch, *, now: datetime, trigger: str = "push", event_ids: Collection[str] = ()
    ) -> BatchResult:
        """Store one batch pushed to crmhub (Segment.com calls, provider webhooks), with its run record.

        The same page store as a pull, then segment evaluation for the contacts it touched, in one
        transaction: either all of it is stored, with its transitions and outbox rows, or nothing.
        Batches pushed at the same time share that transaction (see sync.group_commit).
        `event_ids` (the provider's) are claimed in that transaction; when every one was claimed
        before, `sync.inbound.AlreadyReceivedError` is raised and nothing is stored.
        """
        return self._pushed.submit(Pushed(batch, now, trigger, event_ids))

    def _commit_pushed(self, group: list[Pushed]) -> None:
        """Store every batch of `group`, then evaluate the contacts they touched, in one transaction."""
        now = max(item.now for item in group)
        sources = {item.batch.source for item in group}
        began = time.perf_counter()
        with write_transaction(self.engine) as conn:
            run_id = start_run(
                conn, source=sources.pop() if len(sources) == 1 else None, trigger=group[0].trigger, now=now
            )
            stored: list[tuple[Pushed, BatchResult]] = []
            for item in group:
                try:
                    if item.event_ids:
                        claim_events(conn, item.batch.source, item.event_ids, now=item.now)
                except AlreadyReceivedError as exc:
                    item.error = exc  # wrote nothing: the claim found every id taken
                    continue
                stored.append((item, self.store_batch(conn, item.batch, run_id=run_id, now=item.now)))
            touched = set().union(*(result.contacts for _, result in stored))
            evaluation = None
            if self.evaluate is not None and touched:
                # The contacts the batches touched, at once: the real-time path is this same path.
                evaluation = self.evaluate(conn, now=now, run_id=run_id, contact_ids=touched)
            stats = {
                "batches": len(stored),
                "records": sum(r.records for _, r in stored),
                "events": sum(r.events for _, r in stored),
                "quarantined": sum(r.quarantined for _, r in stored),
            }
            finish_run(conn, run_id, status="succeeded", stats=stats, error=None, now=_later(now, began))
        for item, result in stored:
            result.evaluation = evaluation
            item.result = result

    def _pull(
        self,
        sources: Sequence[Source],
        streams: Collection[str] | None,
        report: RunReport,
        run_id: int,
        now: datetime,
        full: bool,
        on_progress: ProgressCallback | None,
        should_stop: Callable[[], bool],
    ) -> None:
        """Pull the sources side by side, one thread each, and store their pages here as they come.

        A source's streams run one after another on its thread, so each provider sees one request
        at a time, unless the source says its streams may run side by side (Stripe: a thread per
        stream, under its shared limit). This thread is the store's only writer.
        """
        plans: dict[str, list[_Planned]] = {}
        with self.engine.connect() as conn:
            for source in sources:
                for stream in source.streams:
                    if streams is not None and stream.qualified_name not in streams:
                        continue
                    cursor = None if full else load_cursor(conn, stream.source, stream.name)
                    out = StreamReport(source=source.name, stream=stream.name, full=full)
                    thread = stream.qualified_name if source.streams_side_by_side else source.name
                    plans.setdefault(thread, []).append(_Planned(stream, out, cursor))
        if on_progress is not None:
            # Every stream once, in config order, before pages of several sources interleave.
            for plan in plans.values():
                for planned in plan:
                    on_progress(planned.out)
        began: set[int] = set()  # the reports (by id) of the streams whose pull began
        pulls = {f"pull {name}": _pages(plan, now=now, full=full) for name, plan in plans.items()}
        try:
            for pulled in merged(pulls):
                out = pulled.out
                began.add(id(out))
                if pulled.batch is not None:
                    self._store(pulled.batch, out, report, run_id, now)
                elif pulled.error is not None:
                    out.error = str(pulled.error)
                out.seconds = time.perf_counter() - pulled.started
                if on_progress is not None:
                    on_progress(out)
                if should_stop():
                    report.stopped = True
                    return
        finally:
            # In the configured order; a stream a stop kept from starting is not in the report.
            report.streams.extend(p.out for plan in plans.values() for p in plan if id(p.out) in began)

    def _store(self, batch: Batch, out: StreamReport, report: RunReport, run_id: int, now: datetime) -> None:
        """Store one page and its cursor in one transaction, and count it in the stream's report."""
        with write_transaction(self.engine) as conn:
            result = self.store_batch(conn, batch, run_id=run_id, now=now)
            if batch.cursor is not None:
                save_cursor(conn, batch.source, batch.stream, batch.cursor, run_id=run_id, now=now)
        out.records += result.records
        out.events += result.events
        out.quarantined += result.quarantined
        out.problems += result.problems
        out.widenings.extend(w for w in (*batch.warnings, *result.widenings) if w not in out.widenings)
        out.requests += batch.requests
        out.pages += 1
        out.full = out.full or batch.full
        out.fallback_reason = out.fallback_reason or batch.fallback_reason
        report.contacts |= result.contacts


@dataclass(frozen=True)
class _Planned:
    """A stream to pull, its report, and the cursor it starts from."""

    stream: Stream
    out: StreamReport
    cursor: str | None


@dataclass(frozen=True)
class _Pulled:
    """A page of a stream, or (with no batch) the end of the stream and the error that ended it."""

    out: StreamReport
    started: float  # when the stream's pull began, on perf_counter
    batch: Batch | None = None
    error: ConnectorError | None = None


def _pages(plan: Sequence[_Planned], *, now: datetime, full: bool) -> Iterator[_Pulled]:
    """One source's streams, pulled in turn; a stream that fails ends with its error, the next one starts."""
    for planned in plan:
        started = time.perf_counter()
        try:
            for batch in planned.stream.pull(planned.cursor, now=now, full=full):
                yield _Pulled(planned.out, started, batch)
        except ConnectorError as exc:
            yield _Pulled(planned.out, started, error=exc)
        else:
            yield _Pulled(planned.out, started)


def _run_stats(report: RunReport) -> dict[str, object]:
    """What a run records of itself."""
    return {
        "streams": [_stats(s) for s in report.streams],
        "contacts": len(report.contacts),
        "pull_seconds": round(report.pull_seconds, 3),
    }


def _stats(s: StreamReport) -> dict[str, object]:
    return {
        "source": s.source,
        "stream": s.stream,
        "records": s.records,
        "events": s.events,
        "quarantined": s.quarantined,
        "problems": s.problems,
        "widenings": s.widenings,
        "requests": s.requests,
        "pages": s.pages,
        "seconds": round(s.seconds, 3),
        "full": s.full,
        "fallback_reason": s.fallback_reason,
        "error": s.error,
    }


def _later(now: datetime, began: float) -> datetime:
    """`now` moved on by the wall time since `began` (perf_counter): when a run that began at `now` ends."""
    # The run's data is stamped `now` throughout (time is a parameter); its record says how long it took.
    return now + timedelta(seconds=time.perf_counter() - began)
