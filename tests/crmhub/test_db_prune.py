"""`crmhub db prune`: counts, a dry run, the clock from --now, and the refusals with their reasons."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from crmhub.cli import app
from sync.store import create_store_engine, upgrade
from sync.store.tables import sync_runs

runner = CliRunner()
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def _run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A store with four runs that finished 100 days before NOW, one running since then, one recent."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    path = tmp_path / "crmhub.toml"
    path.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    engine = create_store_engine(url)
    upgrade(engine)
    old, recent = NOW - timedelta(days=100), NOW - timedelta(days=1)
    runs = [("succeeded", old)] * 4 + [("running", None), ("succeeded", recent)]
    with engine.begin() as conn:
        conn.execute(
            insert(sync_runs),
            [
                {"trigger": "schedule", "status": status, "started_at": old, "finished_at": at, "stats": {}}
                for status, at in runs
            ],
        )
    engine.dispose()
    return path


def _runs_left(config: Path) -> int:
    engine = create_store_engine(f"sqlite:///{config.parent / 'hub.db'}")
    with engine.connect() as conn:
        left = int(conn.execute(select(func.count()).select_from(sync_runs)).scalar_one())
    engine.dispose()
    return left


def test_prune_counts_deletes_and_says_what_it_kept(config: Path) -> None:
    now = ("--now", NOW.isoformat())
    dry = _run("--config", str(config), "db", "prune", "--older-than", "90d", "--dry-run", "--json", *now)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) == {
        "cutoff": "2026-09-09T12:00:00+00:00",
        "dry_run": True,
        "sync_runs": 4,
        "delivery_attempts": 0,
        "running_kept": 1,
    }
    assert _runs_left(config) == 6
    done = _run("--config", str(config), "db", "prune", "--older-than", "13w", *now)
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert "deleted 4 sync runs and 0 delivery attempts finished before 2026-09-08T12:00:00+00:00" in said
    assert "kept 1 runs begun before then and still marked running" in said
    assert _runs_left(config) == 2


def test_a_cutoff_under_a_month_is_refused_with_exit_2(config: Path) -> None:
    result = _run("--config", str(config), "db", "prune", "--older-than", "7d")
    assert result.exit_code == 2
    assert "--older-than 7d is under 30d" in " ".join(result.output.split())
    assert _runs_left(config) == 6


def test_a_cutoff_inside_a_caps_window_is_refused(config: Path) -> None:
    with config.open("a", encoding="utf-8") as file:
        file.write(
            '[webhooks.endpoints.sms]\nurl = "https://hooks.example/sms"\nsecret_envs = ["SMS_SECRET"]\n'
            'cap = "2 per 8w"\n'
        )
    result = _run("--config", str(config), "db", "prune", "--older-than", "45d", "--now", NOW.isoformat())
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "under the longest frequency cap's window (56d" in said and "pass 56d or more" in said
    assert _runs_left(config) == 6


def test_an_age_that_does_not_parse_names_the_form(config: Path) -> None:
    result = _run("--config", str(config), "db", "prune", "--older-than", "3 months")
    assert result.exit_code == 2 and 'such as "90d"' in " ".join(result.output.split())
