"""`crmhub sync --json` on the sandbox: the segments it reports moved are what the store holds."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from connectors.exceptions import PermanentError
from crmhub import jobs
from crmhub.cli import app
from crmhub.demo import Demo
from sync.hubspot_push import PushReport
from sync.locks import acquire
from sync.runs import start_run
from sync.store.tables import sync_runs


def test_a_first_sync_reports_every_member_who_entered(tmp_path: Path) -> None:
    # A HubSpot opt-out in a page re-evaluates its contacts mid-sync, which gives the segments
    # their first evaluation there; the run's report must count those entries too.
    demo = Demo(tmp_path, people=120, seed=2)
    demo.start()
    try:
        result = CliRunner().invoke(
            app, ["--config", str(demo.config_path), "sync", "--json"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        reported = {s["segment"]: (s["entered"], s["left"]) for s in json.loads(result.stdout)["segments"]}
        sizes = demo.segment_sizes()
    finally:
        demo.stop()
    assert set(reported) == set(sizes) and any(sizes.values())
    assert reported == {key: (members, 0) for key, members in sizes.items()}


def _cli(demo: Demo, *args: str) -> Result:
    return CliRunner().invoke(app, ["--config", str(demo.config_path), *args], catch_exceptions=False)


def test_a_typo_in_a_segment_field_holds_the_segment_instead_of_emptying_it(tmp_path: Path) -> None:
    demo = Demo(tmp_path, people=120, seed=2)
    demo.start()
    try:
        # Before the first sync the automatic fields do not exist: check notes them, and passes.
        first_check = _cli(demo, "check")
        assert first_check.exit_code == 0, first_check.output
        assert "automatic fields appear with the first sync" in first_check.output
        assert _cli(demo, "sync", "--json").exit_code == 0
        before = demo.segment_sizes()
        assert before["trialing"] > 0
        text = demo.config_path.read_text(encoding="utf-8")
        demo.config_path.write_text(
            text.replace('field = "stripe_subscription_status"', 'field = "stripe_subscription_statu"', 1),
            encoding="utf-8",
        )
        checked = _cli(demo, "check")
        planned = _cli(demo, "plan", "--no-fields", "--json")
        synced = _cli(demo, "sync", "--json")
        after = demo.segment_sizes()
    finally:
        demo.stop()
    assert checked.exit_code == 2 and 'did you mean "stripe_subscription_status"' in checked.output
    [trialing] = [row for row in json.loads(planned.stdout)["segments"] if row["key"] == "trialing"]
    assert trialing["mode"] == "held" and trialing["leave"] == 0  # the plan shows it before the sync
    assert synced.exit_code == 1
    held = json.loads(synced.stdout)["segments_held"]
    assert list(held) == ["trialing"] and "stripe_subscription_statu" in held["trialing"][0]
    assert after == before  # no one left because of the typo


def test_a_failed_hubspot_push_still_reports_the_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def expired(*_args: object, **_kwargs: object) -> None:
        raise PermanentError("hubspot: authentication failed (401): check connectors.hubspot.api_key_env")

    monkeypatch.setattr(jobs, "hubspot_push", expired)
    demo = Demo(tmp_path, people=60, seed=2)
    demo.start()
    try:
        result = _cli(demo, "sync")
    finally:
        demo.stop()
    assert result.exit_code == 1
    assert "stripe.customers" in result.output  # the run's table is there
    assert "hubspot push: hubspot: authentication failed (401)" in result.output


def _sync_stripe(tmp_path: Path) -> Result:
    """`crmhub sync --source stripe` against a small sandbox started for it."""
    demo = Demo(tmp_path, people=40, seed=2)
    demo.start()
    try:
        return _cli(demo, "sync", "--source", "stripe")
    finally:
        demo.stop()


def test_a_sync_that_loses_its_lease_says_so_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "renew_lease", lambda *_args, **_kwargs: False)  # taken while it ran
    result = _sync_stripe(tmp_path)
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "sync:stripe: lost to another run (" in said
    assert "stopped at a page boundary, no HubSpot push" in said


def test_contacts_hubspot_refused_are_named_after_the_push_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warning = "hubspot: HubSpot refused the values of 1 contacts (283: Could not get some contacts objects)"
    refused = PushReport(contacts_updated=4, contacts_refused=1, warnings=[warning], calls=3)
    monkeypatch.setattr(jobs, "hubspot_push", lambda *_args, **_kwargs: refused)
    result = _sync_stripe(tmp_path)
    said = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "4 contacts updated in 3 calls" in said and f"note: {warning}" in said


def test_a_run_whose_process_was_killed_is_closed_by_the_next_sync(tmp_path: Path) -> None:
    demo = Demo(tmp_path, people=40, seed=2)
    demo.start()
    try:
        dead = f"{socket.gethostname()[:40]}:999999999:abcdef12"  # no such process
        with demo.engine.begin() as conn:
            killed = start_run(
                conn, source="stripe", trigger="manual", now=datetime.now(UTC) - timedelta(minutes=5)
            )
            assert acquire(conn, "sync:stripe", dead, now=datetime.now(UTC), ttl=timedelta(minutes=30))
        result = _cli(demo, "sync", "--source", "stripe", "--json")
        with demo.engine.connect() as conn:
            status, error = conn.execute(
                select(sync_runs.c.status, sync_runs.c.error).where(sync_runs.c.id == killed)
            ).one()
    finally:
        demo.stop()
    assert result.exit_code == 0, result.output
    assert status == "interrupted" and error.startswith("abandoned: its process ended")
    # Stripe alone on a first sync: segments on HubSpot's fields wait for them, and that is no failure.
    assert "customers_not_opted_out" in json.loads(result.stdout)["segments_waiting"]
