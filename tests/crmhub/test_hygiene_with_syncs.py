"""Hygiene runs with every sync that evaluates the whole store, and only when enabled."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from crmhub.settings import Settings
from crmhub.wiring import build_sync_engine
from sync.hygiene import HygieneConfig, last_run

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _sync(engine: Engine, settings: Settings) -> None:
    # No sources: what is left of a run is its whole-store evaluation, as after any sync.
    build_sync_engine(settings, engine).run([], now=NOW)


def test_a_sync_runs_the_hygiene_policies_even_with_no_segments(engine: Engine) -> None:
    _sync(engine, Settings())
    with engine.connect() as conn:
        run = last_run(conn)
    assert run is not None
    assert {p["policy"] for p in run["policies"]} >= {"dormant", "reconfirm"}


def test_with_hygiene_off_a_sync_runs_no_policy(engine: Engine) -> None:
    _sync(engine, Settings(hygiene=HygieneConfig(enabled=False)))
    with engine.connect() as conn:
        assert last_run(conn) is None
