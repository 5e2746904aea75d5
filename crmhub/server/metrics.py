"""Prometheus metrics: counters the process keeps, and gauges read from the store at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, ScalarSelect, func, select
from sqlalchemy.exc import SQLAlchemyError

from crmhub.jobs import JobOutcome
from sync.store.tables import deliveries, memberships, outbox, segments, transitions
from webhooks.eligibility import OPEN_STATUSES

__all__ = ["Metrics"]

log = logging.getLogger("crmhub.serve")


class Metrics:
    """One registry per server, so tests and several apps in one process never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = Counter(
            "crmhub_records_total",
            "Records stored, by source and how they came",
            ["source", "trigger"],
            registry=self.registry,
        )
        self.sync_seconds = Histogram(
            "crmhub_sync_duration_seconds",
            "Duration of sync and re-evaluation runs",
            ["job"],
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
            registry=self.registry,
        )
        self.runs = Counter(
            "crmhub_runs_total",
            "Scheduled and manual runs, by job and outcome",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.inbound = Counter(
            "crmhub_inbound_requests_total",
            "Inbound webhook and ingest requests, by source and status",
            ["source", "status"],
            registry=self.registry,
        )

    def bind(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        """Read segment sizes, transitions and the delivery queue from `engine` on every scrape."""
        self.registry.register(_StoreCollector(engine, clock))

    def observe_job(self, outcome: JobOutcome) -> None:
        """Count a run's records and time it; a run skipped because the last one overran counts as such."""
        if outcome.busy:
            self.runs.labels(outcome.job, "overran").inc()
        report = outcome.report
        if report is None:
            return
        self.runs.labels(outcome.job, report.status).inc()
        seconds = 0.0
        for stream in report.streams:
            self.records.labels(stream.source, "pull").inc(stream.records)
            seconds += stream.seconds
        self.sync_seconds.labels(outcome.job).observe(seconds)

    def observe_ingest(self, source: str, status: int, records: int = 0) -> None:
        """Count one inbound request and the records it stored."""
        self.inbound.labels(source, str(status)).inc()
        if records:
            self.records.labels(source, "push").inc(records)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    """Gauges that are facts of the store, so every process reports the same numbers."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("crmhub_store_up", "1 when the last scrape could read the store, else 0")
        try:
            with self.engine.connect() as conn:
                families = self._read(conn)
        except SQLAlchemyError:
            # The process's own counters are still worth scraping while the store is down.
            log.warning("metrics: the store could not be read", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, conn: Connection) -> list[Metric]:
        # Every read here is served by an index and grows with what is current (members, the queue, a
        # day of transitions), never with history: a year's store (2 million transitions, every
        # delivery ever made) took 3 s a scrape when the gauges counted everything.
        sizes = GaugeMetricFamily("crmhub_segment_members", "Members of each segment", labels=["segment"])
        moved = GaugeMetricFamily(
            "crmhub_transitions_last_day",
            "Transitions written in the last 24 hours, by segment and kind",
            labels=["segment", "kind"],
        )
        by_status = GaugeMetricFamily(
            "crmhub_deliveries",
            "Deliveries still to be sent (pending, leased, failed), by endpoint and status",
            labels=["endpoint", "status"],
        )
        oldest = GaugeMetricFamily(
            "crmhub_oldest_pending_delivery_age_seconds", "Age of the oldest undelivered delivery"
        )
        depth = GaugeMetricFamily(
            "crmhub_queue_depth",
            "Work waiting: deliveries not yet sent and outbox rows not yet fanned out",
            labels=["queue"],
        )
        now = self.clock()
        s, m, d = segments.c, memberships.c, deliveries.c
        for key, members in conn.execute(
            select(s.key, func.count(m.contact_id))
            .select_from(segments.outerjoin(memberships, m.segment_id == s.id))
            .group_by(s.id, s.key)
            .order_by(s.key)
        ):
            sizes.add_metric([key], members)
        for key, *counts in conn.execute(
            select(s.key, *(_transitions_since(now - _RECENT, kind) for kind in _KINDS)).order_by(s.key)
        ):
            for kind, count in zip(_KINDS, counts, strict=True):
                moved.add_metric([key, kind], count)
        waiting = 0
        for endpoint, status, count in conn.execute(
            select(d.endpoint, d.status, func.count())
            .where(d.status.in_(OPEN_STATUSES))
            .group_by(d.endpoint, d.status)
        ):
            by_status.add_metric([endpoint, status], count)
            waiting += count
        first = conn.execute(select(func.min(d.created_at)).where(d.status.in_(OPEN_STATUSES))).scalar()
        unfanned = conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.dispatched_at.is_(None))
        ).scalar_one()
        oldest.add_metric([], (now - first).total_seconds() if first is not None else 0.0)
        depth.add_metric(["deliveries"], waiting)
        depth.add_metric(["outbox"], unfanned)
        return [sizes, moved, by_status, oldest, depth]


_RECENT = timedelta(hours=24)
_KINDS = ("entered", "left")


def _transitions_since(since: datetime, kind: str) -> ScalarSelect[int]:
    """A segment's transitions of `kind` since `since`: a range of its (segment_id, occurred_at) index."""
    t = transitions.c
    return (
        select(func.count())
        .where(t.segment_id == segments.c.id, t.occurred_at >= since, t.kind == kind)
        .scalar_subquery()
    )
