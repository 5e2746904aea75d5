"""`/metrics`: run counters kept by the process and gauges read from the store, in the text format."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert, update
from starlette.exceptions import StarletteDeprecationWarning

from crmhub.jobs import JobOutcome
from crmhub.server.app import create_app
from crmhub.server.metrics import Metrics
from crmhub.server.services import Services
from crmhub.settings import Settings
from sync.engine import RunReport, StreamReport
from sync.store import create_store_engine, upgrade
from sync.store.tables import deliveries, outbox
from tests.webhooks.conftest import T0, Clock, add_transition, seed

with warnings.catch_warnings():
    # Starlette 1.10 asks for httpx2 in its TestClient; this project pins httpx, which it still drives.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = create_store_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _store_with_a_queue(engine: Engine) -> None:
    """Three contacts entered `vip` (two of them are still members); one left; deliveries in three states.

    The third contact entered and left once before, two days ago: history the gauges no longer read.
    """
    tids = seed(engine, 3, now=T0 - timedelta(minutes=10))
    with engine.begin() as conn:
        for kind in ("entered", "left"):
            add_transition(conn, 1, 3, kind=kind, now=T0 - timedelta(days=2))
        left = add_transition(conn, 1, 3, kind="left", now=T0)
        # The first three outbox rows were fanned out; the `left` one waits.
        conn.execute(update(outbox).where(outbox.c.transition_id != left).values(dispatched_at=T0))
        rows = [
            (tids[0], "succeeded", T0 - timedelta(minutes=10)),
            (tids[1], "pending", T0 - timedelta(minutes=5)),
            (tids[2], "failed", T0 - timedelta(minutes=9)),
        ]
        conn.execute(
            insert(deliveries),
            [
                {
                    "transition_id": tid,
                    "endpoint": "sms",
                    "webhook_id": f"msg_{tid}",
                    "status": state,
                    "created_at": at,
                    "updated_at": at,
                }
                for tid, state, at in rows
            ],
        )


def test_store_gauges_show_segments_transitions_deliveries_and_the_queue(engine: Engine) -> None:
    _store_with_a_queue(engine)
    metrics = Metrics()
    metrics.bind(engine, Clock(T0))
    samples = _samples(metrics.render().decode())
    assert samples[("crmhub_store_up", ())] == 1
    assert samples[("crmhub_segment_members", (("segment", "vip"),))] == 2
    assert samples[("crmhub_transitions_last_day", (("kind", "entered"), ("segment", "vip")))] == 3
    assert samples[("crmhub_transitions_last_day", (("kind", "left"), ("segment", "vip")))] == 1
    for state, count in (("pending", 1), ("failed", 1)):
        assert samples[("crmhub_deliveries", (("endpoint", "sms"), ("status", state)))] == count
    # Finished deliveries only grow: counting them read every delivery ever made at each scrape.
    assert ("crmhub_deliveries", (("endpoint", "sms"), ("status", "succeeded"))) not in samples
    assert samples[("crmhub_queue_depth", (("queue", "deliveries"),))] == 2
    assert samples[("crmhub_queue_depth", (("queue", "outbox"),))] == 1
    # The failed delivery, created nine minutes ago, is the oldest one not yet delivered.
    assert samples[("crmhub_oldest_pending_delivery_age_seconds", ())] == 9 * 60


def test_an_empty_store_reports_zero_queue_and_zero_age(engine: Engine) -> None:
    metrics = Metrics()
    metrics.bind(engine, Clock(T0))
    samples = _samples(metrics.render().decode())
    assert samples[("crmhub_queue_depth", (("queue", "deliveries"),))] == 0
    assert samples[("crmhub_queue_depth", (("queue", "outbox"),))] == 0
    assert samples[("crmhub_oldest_pending_delivery_age_seconds", ())] == 0


def test_runs_count_records_pulled_and_pushed_and_time_the_sync() -> None:
    metrics = Metrics()
    streams = [
        StreamReport("stripe", "customers", records=40, seconds=1.5),
        StreamReport("stripe", "invoices", records=2, seconds=0.5),
        StreamReport("hubspot", "contacts", records=7, seconds=1.0, error="boom"),
    ]
    metrics.observe_job(JobOutcome("sync", report=RunReport(1, streams=streams)))
    metrics.observe_job(JobOutcome("sync", busy={"sync:stripe": "elsewhere"}))
    metrics.observe_ingest("segmentio", 200, records=3)
    metrics.observe_ingest("stripe", 401)
    samples = _samples(metrics.render().decode())
    assert samples[("crmhub_records_total", (("source", "stripe"), ("trigger", "pull")))] == 42
    assert samples[("crmhub_records_total", (("source", "hubspot"), ("trigger", "pull")))] == 7
    assert samples[("crmhub_records_total", (("source", "segmentio"), ("trigger", "push")))] == 3
    assert samples[("crmhub_runs_total", (("job", "sync"), ("outcome", "partial")))] == 1
    assert samples[("crmhub_runs_total", (("job", "sync"), ("outcome", "overran")))] == 1
    assert samples[("crmhub_sync_duration_seconds_count", (("job", "sync"),))] == 1
    assert samples[("crmhub_sync_duration_seconds_sum", (("job", "sync"),))] == 3.0
    assert samples[("crmhub_inbound_requests_total", (("source", "stripe"), ("status", "401")))] == 1


def test_the_metrics_route_serves_the_store_gauges_while_the_app_runs(engine: Engine) -> None:
    _store_with_a_queue(engine)
    services = Services(settings=Settings(), engine=engine, clock=Clock(T0))
    with TestClient(create_app(services, scheduler=False, worker=False)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    assert samples[("crmhub_queue_depth", (("queue", "outbox"),))] == 1
    assert samples[("crmhub_segment_members", (("segment", "vip"),))] == 2


def test_a_store_that_cannot_be_read_still_leaves_the_process_counters(tmp_path: Path) -> None:
    unreachable = create_store_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'hub.db'}")
    metrics = Metrics()
    metrics.bind(unreachable, Clock(T0))
    metrics.observe_ingest("segmentio", 200, records=2)
    samples = _samples(metrics.render().decode())
    assert samples[("crmhub_store_up", ())] == 0
    assert samples[("crmhub_records_total", (("source", "segmentio"), ("trigger", "push")))] == 2
    assert not any(name == "crmhub_queue_depth" for name, _ in samples)
    unreachable.dispose()
