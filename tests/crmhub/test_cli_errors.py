"""Mistakes a user meets before anything runs: each a located message and an exit code, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from crmhub.cli import app
from crmhub.server.services import Services
from crmhub.settings import load_settings, missing_secrets
from sync.exceptions import SchemaOutOfDateError
from sync.store import create_store_engine, ensure_schema, status, upgrade


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "crmhub.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "hub.db"}"\n', encoding="utf-8")
    return path


def _run(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["--config", str(config), *args], env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "CRMHUB_CONNECTORS__TYPEFORM__FORMS",
            "crmhubNPS",
            "connectors.typeform.forms: expected a list, written as JSON in environment variable "
            'CRMHUB_CONNECTORS__TYPEFORM__FORMS, found "crmhubNPS": '
            "set CRMHUB_CONNECTORS__TYPEFORM__FORMS='[\"crmhubNPS\"]'",
        ),
        (
            "CRMHUB_CONNECTORS__HUBSPOT__OBJECTS",
            "contacts,deals",
            'set CRMHUB_CONNECTORS__HUBSPOT__OBJECTS=\'["contacts", "deals"]\'',
        ),
        (
            "CRMHUB_SERVER__FORWARDED_ALLOW_IPS",
            "127.0.0.1",
            "server.forwarded_allow_ips: expected a list, written as JSON in environment variable "
            "CRMHUB_SERVER__FORWARDED_ALLOW_IPS",
        ),
        (
            "CRMHUB_CONNECTORS__TYPEFORM__FORMS",
            '["a"',
            "found invalid JSON (Expecting ',' delimiter",
        ),
        (
            "CRMHUB_CONNECTORS",
            "x",
            "connectors: expected a table, written as JSON in environment variable CRMHUB_CONNECTORS, "
            'found "x": set its keys one by one (CRMHUB_CONNECTORS__<KEY>=...)',
        ),
    ],
    ids=["forms", "objects", "forwarded-ips", "broken-json", "whole-table"],
)
def test_an_environment_override_that_is_not_json_names_the_variable_and_the_fix(
    config: Path, variable: str, value: str, expected: str
) -> None:
    result = _run(config, "check", env={variable: value})
    assert result.exit_code == 2, result.output
    assert f"configuration error in {config}" in result.output
    assert expected in result.output
    assert "Traceback" not in result.output and "SettingsError" not in result.output


def test_a_wrong_value_from_the_environment_names_the_variable(config: Path) -> None:
    result = _run(config, "check", env={"CRMHUB_SERVER__PORT": "abc"})
    assert result.exit_code == 2
    expected = (
        'server.port: expected an integer, found "abc" (set by environment variable CRMHUB_SERVER__PORT)'
    )
    assert expected in result.output


@pytest.mark.parametrize("url", ["sqlite://crm.db", "sqlite:crm.db"])
def test_a_sqlite_url_with_too_few_slashes_says_what_one_looks_like(config: Path, url: str) -> None:
    result = _run(config, "db", "upgrade", env={"CRMHUB_DATABASE__URL": url})
    assert result.exit_code == 2, result.output
    assert (
        "database.url: expected a SQLite URL like sqlite:///relative/path.db (three slashes) or "
        f'sqlite:////absolute/path.db (four), found "{url}"' in result.output
    )
    assert "Traceback" not in result.output and "ArgumentError" not in result.output


def test_a_postgresql_url_that_does_not_parse_keeps_its_password_out_of_the_message(config: Path) -> None:
    result = _run(config, "check", env={"CRMHUB_DATABASE__URL": "postgresql://me:s3cret@host:port/db"})
    assert result.exit_code == 2
    assert "database.url: expected a URL like postgresql://user@host:5432/dbname" in result.output
    assert "s3cret" not in result.output


def _newer_store(config: Path) -> None:
    """The store as a newer crmhub would leave it: at a revision this one does not ship."""
    engine = create_store_engine(f"sqlite:///{config.parent / 'hub.db'}", checkpoint_thread=False)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()


@pytest.mark.parametrize("command", [["db", "status"], ["db", "upgrade"], ["segments", "list"], ["sources"]])
def test_a_store_written_by_a_newer_crmhub_says_to_upgrade_crmhub(config: Path, command: list[str]) -> None:
    _newer_store(config)
    result = _run(config, *command)
    assert result.exit_code == 1, result.output
    assert (
        "the store is at schema revision 0099, which this crmhub does not know (it knows up to "
        in result.output
    )
    assert "it was written by a newer crmhub; upgrade crmhub" in result.output
    assert "Traceback" not in result.output and "Can't locate revision" not in result.output


def test_status_and_ensure_schema_know_an_unknown_revision(config: Path) -> None:
    _newer_store(config)
    engine = create_store_engine(f"sqlite:///{config.parent / 'hub.db'}", checkpoint_thread=False)
    try:
        current = status(engine)
        assert current.current == "0099" and not current.known and not current.up_to_date
        for migrate in (True, False):
            with pytest.raises(SchemaOutOfDateError, match="newer crmhub"):
                ensure_schema(engine, migrate=migrate)
    finally:
        engine.dispose()


def test_the_servers_readiness_names_a_store_written_by_a_newer_crmhub(config: Path) -> None:
    _newer_store(config)
    settings = load_settings(config)
    engine = create_store_engine(settings.database.url, checkpoint_thread=False)
    try:
        problem = Services(settings=settings, engine=engine).store_problem()
    finally:
        engine.dispose()
    assert problem is not None and "written by a newer crmhub; upgrade crmhub" in problem


def test_a_sqlite_file_in_a_missing_directory_names_the_file_and_the_cause(
    config: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dir" / "hub.db"
    result = _run(config, "db", "upgrade", env={"CRMHUB_DATABASE__URL": f"sqlite:///{missing}"})
    assert result.exit_code == 1
    assert (
        f"database: cannot open the SQLite file {missing}: its directory {missing.parent} does not "
        "exist: create it, or fix database.url" in result.output
    )
    assert "database server is running" not in result.output


def test_a_sqlite_url_naming_a_directory_says_so(config: Path, tmp_path: Path) -> None:
    result = _run(config, "db", "status", env={"CRMHUB_DATABASE__URL": f"sqlite:///{tmp_path}"})
    assert result.exit_code == 1
    assert f"cannot open the SQLite file {tmp_path}: it is a directory" in result.output


def test_a_file_that_is_not_a_database_says_so(config: Path, tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_bytes(b"not sqlite " * 200)
    result = _run(config, "db", "status", env={"CRMHUB_DATABASE__URL": f"sqlite:///{junk}"})
    assert result.exit_code == 1
    assert f"database: {junk} is not a usable SQLite database" in result.output


def test_an_exported_but_empty_secret_is_reported_as_empty(config: Path) -> None:
    config.write_text(config.read_text() + "[connectors.stripe]\nenabled = true\n", encoding="utf-8")
    settings = load_settings(config)
    [empty] = missing_secrets(settings, {"STRIPE_API_KEY": ""})
    assert "found it set but empty: set STRIPE_API_KEY" in str(empty)
    [unset] = missing_secrets(settings, {})
    assert "found it unset: set STRIPE_API_KEY" in str(unset)


def test_a_configuration_error_found_by_sync_names_the_file(config: Path) -> None:
    config.write_text(config.read_text() + "[connectors.stripe]\nenabled = true\n", encoding="utf-8")
    result = _run(config, "sync", env={"STRIPE_API_KEY": ""})
    assert result.exit_code == 2, result.output
    assert f"configuration error in {config}" in result.output
    assert "STRIPE_API_KEY to hold the secret, found it set but empty" in result.output


def test_a_command_that_creates_the_store_says_where_once(config: Path, tmp_path: Path) -> None:
    first = _run(config, "segments")
    assert first.exit_code == 0, first.output
    note = " ".join(first.stderr.split())
    assert f"note no store at {tmp_path / 'hub.db'} yet (database.url): created an empty one" in note
    again = _run(config, "segments")
    assert "no store at" not in again.stderr


def test_a_relative_store_path_is_named_relative_to_this_directory(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _run(config, "segments", env={"CRMHUB_DATABASE__URL": "sqlite:///elsewhere.db"})
    note = " ".join(result.stderr.split())
    assert f"no store at {tmp_path / 'elsewhere.db'} yet (database.url, relative to this directory)" in note
