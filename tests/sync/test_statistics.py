"""A sync that wrote much of the store analyzes it on PostgreSQL before segments are evaluated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from connectors import Batch, Record
from connectors.base import Stream
from field_mapping.config import FieldMappingConfig
from field_mapping.mapper import Mapper
from sync.engine import SyncEngine
from sync.ingest import PageStore
from sync.runs import start_run
from sync.store import create_store_engine, upgrade
from sync.store.statistics import analyze_grown, refresh_statistics
from tests.sync.test_engine import OneStreamSource

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Customers(Stream):
    """One page of customers numbered from `first`."""

    source = "stripe"
    name = "customers"

    def __init__(self, first: int, count: int) -> None:
        self.first, self.count = first, count

    def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
        recs = [
            Record(
                "stripe",
                "customers",
                f"cus_{n}",
                NOW - timedelta(minutes=n),
                {"id": f"cus_{n}", "email": f"p{n}@example.com"},
            )
            for n in range(self.first, self.first + self.count)
        ]
        yield Batch("stripe", "customers", recs, cursor=str(self.first + self.count))


def _estimated_rows(engine: Engine, table: str) -> float:
    with engine.connect() as conn:
        return float(
            conn.execute(text(f"SELECT reltuples FROM pg_class WHERE oid = '{table}'::regclass")).scalar_one()
        )


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_backfill_is_analyzed_and_a_small_run_after_it_is_not(engine: Engine) -> None:
    sync = SyncEngine(engine, PageStore(Mapper(FieldMappingConfig())))
    assert _estimated_rows(engine, "records") == -1  # never analyzed (autovacuum is off on CI's server)
    sync.run([OneStreamSource(Customers(0, 300))], now=NOW)
    assert _estimated_rows(engine, "records") == 300
    assert _estimated_rows(engine, "contact_identities") == 600  # e-mail and Stripe id per customer
    # 20 more records: under 50 + 10% of 300, as autovacuum would wait too.
    sync.run([OneStreamSource(Customers(300, 20))], now=NOW)
    assert _estimated_rows(engine, "records") == 300


def test_sqlite_is_left_to_plan_without_statistics(tmp_path: Path) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        assert refresh_statistics(conn, rows_written=1_000_000) is False
        assert (
            conn.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")).scalar_one()
            == 0
        )
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_table_is_analyzed_once_its_changes_pass_the_trigger_counting_this_transactions(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        start_run(conn, source="stripe", trigger="manual", now=NOW)
        assert not analyze_grown(conn, "sync_runs", rows_written=1)  # 50 rows plus 10% first
        assert analyze_grown(conn, "sync_runs", rows_written=51)
    assert _estimated_rows(engine, "sync_runs") == 1
    with engine.begin() as conn:
        # Analyzed at one row: the trigger is now 50.1 changes since.
        assert not analyze_grown(conn, "sync_runs", rows_written=50)
        assert not analyze_grown(conn, "sync_runs", rows_written=0)
