"""The command line as a user meets it: exit codes, messages, JSON, no tracebacks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from crmhub.cli import _output, app, sync_commands
from sync.engine import RunReport, StreamReport
from sync.locks import acquire
from sync.store import create_store_engine, upgrade, write_transaction
from webhooks import generate_secret

runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "crmhub.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "hub.db"}"\n', encoding="utf-8")
    return path


def test_init_writes_the_example_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "crmhub.toml"
    result = _run("--config", str(target), "init")
    assert result.exit_code == 0 and "[connectors.stripe]" in target.read_text()
    again = _run("--config", str(target), "init")
    assert again.exit_code == 2 and "already exists" in again.output
    assert _run("--config", str(target), "init", "--force").exit_code == 0


def test_check_accepts_the_starter_config_once_its_webhook_secret_is_set(tmp_path: Path) -> None:
    target = tmp_path / "crmhub.toml"
    _run("--config", str(target), "init")
    missing = _run("--config", str(target), "check", env={"CRMHUB_SMS_WEBHOOK_SECRET": ""})
    assert missing.exit_code == 2
    assert (
        "webhooks.endpoints.sms.secret_envs[0]: expected environment variable CRMHUB_SMS_WEBHOOK_SECRET"
        in (missing.output)
    )
    result = _run("--config", str(target), "check", env={"CRMHUB_SMS_WEBHOOK_SECRET": generate_secret()})
    assert result.exit_code == 0 and "configuration is valid" in result.output
    # The starter config enables no source: valid, but a sync would pull nothing, and check says so.
    said = " ".join(result.output.split())
    assert "no source is enabled, so `crmhub sync` pulls nothing" in said
    # Notes are printed as written: a TOML table name is not read as markup and dropped.
    assert "set enabled = true in a [connectors.<name>] table" in said
    # The starter's SMS endpoint gets only segments that require its channel: no consent note.
    assert "requires sms consent" not in said


def test_check_json_summarizes_without_secrets(config: Path) -> None:
    config.write_text(config.read_text() + "[connectors.stripe]\nenabled = true\n", encoding="utf-8")
    result = _run("--config", str(config), "check", "--json", env={"STRIPE_API_KEY": "sk_test_secret"})
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["sources"] == {"stripe": "https://api.stripe.com"}
    assert not any("no source is enabled" in note for note in summary["notes"])
    assert "sk_test_secret" not in result.output


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[connectors.stripe]\nenabeld = true\n", "connectors.stripe.enabeld: expected one of the keys"),
        (
            "[connectors.stripe]\npage_size = 'ten'\n",
            'connectors.stripe.page_size: expected an integer, found "ten"',
        ),
        (
            "[connectors.typeform]\nenabled = true\nforms = 'abc'\n",
            'connectors.typeform.forms: expected a list, found "abc"',
        ),
        (
            "[connectors.hubspot]\nenabled = true\n",
            "connectors.hubspot.api_key_env: expected environment variable HUBSPOT_ACCESS_TOKEN",
        ),
        (
            '[[field_mapping.rules]]\nsource = "stripe"\nstream = "customers"\n'
            'path = "email"\ntype = "email"\n',
            "field_mapping.rules[0].field: expected a value, found nothing",
        ),
    ],
    ids=["typo", "wrong-type", "wrong-shape", "unset-secret", "missing-required"],
)
def test_check_reports_each_mistake_with_its_path_and_exits_2(config: Path, toml: str, expected: str) -> None:
    config.write_text(config.read_text() + toml, encoding="utf-8")
    result = _run("--config", str(config), "check", env={"HUBSPOT_ACCESS_TOKEN": ""})
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output


def test_commands_without_a_config_file_exit_2(tmp_path: Path) -> None:
    result = _run("--config", str(tmp_path / "none.toml"), "db", "status")
    assert result.exit_code == 2 and "run `crmhub init`" in result.output


def test_db_upgrade_then_status(config: Path) -> None:
    before = json.loads(_run("--config", str(config), "db", "status", "--json").stdout)
    assert before["current"] is None and before["pending"]
    first = _run("--config", str(config), "db", "upgrade")
    assert first.exit_code == 0 and "applied" in first.output
    second = _run("--config", str(config), "db", "upgrade")
    assert second.exit_code == 0 and "nothing to do" in second.output
    after = json.loads(_run("--config", str(config), "db", "status", "--json").stdout)
    assert after["up_to_date"] and after["current"] == before["head"]


def test_unreachable_database_is_a_clear_failure(tmp_path: Path) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text('[database]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n', encoding="utf-8")
    result = _run("--config", str(config), "db", "status")
    assert result.exit_code == 1
    assert "database:" in result.output and "check database.url" in result.output
    assert "Traceback" not in result.output


def test_a_sync_with_no_source_enabled_says_what_to_set(config: Path) -> None:
    result = _run("--config", str(config), "sync")
    assert result.exit_code == 0
    assert "note: no source to pull" in result.stderr and "set enabled = true" in result.stderr


def test_hubspot_push_without_the_hubspot_connector_is_a_located_error(config: Path) -> None:
    config.write_text(config.read_text() + "[field_mapping.hubspot]\npush = true\n", encoding="utf-8")
    for command in ("check", "sync"):
        result = _run("--config", str(config), command)
        assert result.exit_code == 2
        assert "field_mapping.hubspot.push: expected connectors.hubspot.enabled = true" in result.output
    # The sync's own report comes first: what it pulled and evaluated is stored.
    assert "segments: no change" in result.output


def test_tables_keep_every_value_whole_on_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    narrow = Console(width=80, record=True)
    monkeypatch.setattr(_output, "console", narrow)
    monkeypatch.setattr(sync_commands, "console", narrow)
    names = [("stripe", "subscriptions"), ("typeform", "responses"), ("hubspot", "companies")]
    streams = [StreamReport(source, stream, records=123_456, requests=1_235) for source, stream in names]
    sync_commands._print_report(RunReport(run_id=7, streams=streams, pull_seconds=2.5), {})
    report = narrow.export_text()
    assert "…" not in report and "incremental" in report and "quarantined" in report
    # Stream seconds overlap when streams run side by side; the run's own time is said once.
    assert "370,368 records in 2.5 s, the streams side by side" in report
    assert all(f"{source}.{stream}" in report for source, stream in names)
    # Longer than any column can be: folded onto the next lines, every character kept.
    table = Table("field", "type", "path", "first seen")
    long_name = "stripe_charge_billing_details_address_postal_code"
    table.add_row(long_name, "string", "charges:billing_details.address.postal_code", "2026-12-03")
    monkeypatch.setattr(_output, "console", narrow := Console(width=80, record=True))
    _output.print_table(table)
    _header, *lines = narrow.export_text().splitlines()
    assert "".join(line.split()[0] for line in lines) == long_name


def test_sync_json_says_what_it_skipped_when_every_lease_is_busy(config: Path, tmp_path: Path) -> None:
    config.write_text(config.read_text() + "[connectors.stripe]\nenabled = true\n", encoding="utf-8")
    store = create_store_engine(f"sqlite:///{tmp_path / 'hub.db'}", checkpoint_thread=False)
    try:
        upgrade(store)
        with write_transaction(store) as conn:
            now = datetime.now(UTC)  # the command reads the real clock
            assert acquire(conn, "sync:stripe", "other-host:1:busy", now=now, ttl=timedelta(hours=1))
    finally:
        store.dispose()
    result = _run("--config", str(config), "sync", "--json", env={"STRIPE_API_KEY": "sk_test_secret"})
    assert result.exit_code == 1
    # Scripts read stdout: an empty one would not say why nothing ran.
    assert json.loads(result.stdout) == {"skipped": {"sync:stripe": "held by other-host:1:busy"}}
    assert "sync:stripe: skipped, another run (other-host:1:busy) holds it" in result.stderr
