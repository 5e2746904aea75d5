"""Ctrl-C: a quiet exit 130, the run closed as interrupted, what it committed kept, no lock left behind."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.default import DefaultDialect
from typer.testing import CliRunner, Result

from crmhub.cli import app, sync_commands
from crmhub.sandbox import Sandbox, SandboxServer, credentials
from crmhub.sandbox.config import sandbox_config
from sync.engine import StreamReport
from sync.store import create_store_engine, upgrade, write_transaction
from sync.store.tables import cursors, records, sync_runs


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with SandboxServer(Sandbox(people=120, seed=5)) as server:
        yield server.url


@pytest.fixture
def config(sandbox_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in credentials.ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "crmhub.toml"
    path.write_text(sandbox_config(sandbox_url, f"sqlite:///{tmp_path / 'hub.db'}"), encoding="utf-8")
    return path


def _cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)


def _store(config: Path) -> Engine:
    return create_store_engine(f"sqlite:///{config.parent / 'hub.db'}", checkpoint_thread=False)


def _runs(config: Path) -> list[tuple[str, str | None]]:
    engine = _store(config)
    try:
        with engine.connect() as conn:
            query = select(sync_runs.c.status, sync_runs.c.error).order_by(sync_runs.c.id)
            return [(status, error) for status, error in conn.execute(query)]
    finally:
        engine.dispose()


def _count(config: Path, table: Any) -> int:
    engine = _store(config)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def _interrupt_after_a_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C once a stream has stored a page: what it raises in the main thread, between two pages."""
    shown = sync_commands.StreamProgress.update

    def interrupt_after_a_page(self: sync_commands.StreamProgress, stream: StreamReport) -> None:
        shown(self, stream)
        if stream.pages:
            raise KeyboardInterrupt

    monkeypatch.setattr(sync_commands.StreamProgress, "update", interrupt_after_a_page)


def test_ctrl_c_during_a_full_sync_says_a_plain_sync_re_lists_only_what_was_re_listing(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_after_a_page(monkeypatch)
    result = _cli(config, "sync", "--full")
    assert result.exit_code == 130
    said = " ".join(result.output.split())
    assert "those --full had not reached yet are pulled incrementally: run `crmhub sync --full` again" in said


def test_ctrl_c_during_a_sync_closes_the_run_as_interrupted_and_keeps_its_pages(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_after_a_page(monkeypatch)
    result = _cli(config, "sync")
    assert result.exit_code == 130
    assert (
        "interrupted: run #1 stopped after the last stored page; run `crmhub sync` again to resume"
        in result.output
    )
    assert "Traceback" not in result.output
    assert "--full" not in result.output
    [(status, error)] = _runs(config)
    assert status == "interrupted" and error and "Ctrl-C" in error
    # The committed page stays, with its cursor, for the next run to resume from.
    assert _count(config, records) > 0 and _count(config, cursors) > 0
    assert "#1 interrupted" in _cli(config, "sources").output

    monkeypatch.undo()
    for name, value in credentials.ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    again = _cli(config, "sync", "--json")
    assert again.exit_code == 0, again.output
    assert [status for status, _ in _runs(config)][:2] == ["interrupted", "succeeded"]


def test_ctrl_c_inside_a_statement_does_not_end_in_database_is_locked(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reviewer's case: a SIGINT just as a page's identity lookup returned. The query's rows
    # were still unread, so SQLite deferred closing its connection, which kept the write lock, and
    # freeing the run's leases waited out busy_timeout (10 s) to fail with "database is locked".
    def interrupted(self: DefaultDialect, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        DefaultDialect.do_execute(self, cursor, statement, params, *args)
        lookup = statement.startswith("SELECT") and "FROM contact_identities" in statement
        # Only once the lookup finds someone: a query with no row to read leaves nothing open.
        if lookup and cursor.connection.execute(statement, params).fetchone() is not None:
            raise KeyboardInterrupt

    monkeypatch.setattr(SQLiteDialect_pysqlite, "do_execute", interrupted)
    started = time.monotonic()
    result = _cli(config, "sync", "--json")
    took = time.monotonic() - started
    assert result.exit_code == 130, result.output
    assert "database is locked" not in result.output
    assert "interrupted: run #1 stopped after the last stored page" in result.output
    assert took < 5, f"the interrupt path waited {took:.1f} s"
    assert [status for status, _ in _runs(config)] == ["interrupted"]


def test_a_ctrl_c_inside_a_statement_releases_the_sqlite_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hub.db"
    engine = create_store_engine(f"sqlite:///{path}", checkpoint_thread=False)
    upgrade(engine)

    def interrupted(self: DefaultDialect, cursor: Any, statement: str, *args: Any) -> None:
        DefaultDialect.do_execute(self, cursor, statement, *args)
        raise KeyboardInterrupt

    # pytest.raises keeps the frames (and the cursor in them), as a propagating Ctrl-C does.
    with pytest.raises(KeyboardInterrupt) as caught, write_transaction(engine) as conn:
        monkeypatch.setattr(SQLiteDialect_pysqlite, "do_execute", interrupted)
        # A query whose rows are not read yet: its statement stays open in the cursor.
        conn.exec_driver_sql("SELECT name FROM sqlite_master")
    monkeypatch.undo()
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # "database is locked" at once while the lock is held
        other.execute("ROLLBACK")
    finally:
        other.close()
        del caught
        engine.dispose()


def test_ctrl_c_while_the_commands_are_still_imported_exits_130_quietly(tmp_path: Path) -> None:
    # The console script's own code, with the Ctrl-C landing in the half second of imports.
    script = tmp_path / "crmhub_script.py"
    script.write_text(
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def interrupting(name, *args, **kwargs):\n"
        "    if name == 'sqlalchemy':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = interrupting\n"
        "sys.argv = ['crmhub', '--help']\n"
        "from crmhub.cli import main\n"
        "sys.exit(main())\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
