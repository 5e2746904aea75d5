"""Several processes migrating one store at once (replicas started together with migrate_on_start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from sync.store import create_store_engine, status, upgrade


@pytest.fixture
def scratch_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend: a SQLite file, or a new PostgreSQL database (fresh_pg_url)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'crmhub.db'}"
    url: str = request.getfixturevalue("fresh_pg_url")
    return url


# One migrating process: ready once imported, it upgrades when told to and prints the outcome.
_PROCESS = """
import json, sys
from sync.store import create_store_engine, upgrade
engine = create_store_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
try:
    done = upgrade(engine)
except Exception as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"applied": done.applied, "up_to_date": done.up_to_date}))
"""


def _upgrade_together(url: str, n: int) -> list[dict[str, Any]]:
    """`n` processes upgrading `url` at the same moment (Alembic's context is global: not threads)."""
    root = Path(__file__).parents[2]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, url],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        return [json.loads(process.communicate(timeout=120)[0]) for process in processes]
    finally:
        for process in processes:
            process.kill()


def test_upgrades_started_together_apply_each_migration_once_and_all_succeed(scratch_url: str) -> None:
    every = create_store_engine(scratch_url)
    revisions = status(every).pending
    every.dispose()
    # Unserialized, all but one failed: on PostgreSQL with `duplicate key value violates unique
    # constraint "pg_type_typname_nsp_index"` (each created the same tables), on SQLite with
    # "database is locked" (each read the empty schema, then the one that waited wrote on a stale read).
    results = _upgrade_together(scratch_url, 3)
    assert all(r.get("up_to_date") for r in results), results
    assert sorted((r["applied"] for r in results), key=len) == [[], [], revisions]


def test_a_store_at_head_is_only_read_neither_locked_nor_written(scratch_url: str) -> None:
    engine = create_store_engine(scratch_url)
    upgrade(engine)
    executed: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        executed.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    again = upgrade(engine)
    event.remove(engine, "before_cursor_execute", record)
    engine.dispose()
    assert again.up_to_date and again.applied == []
    # Every command and server start upgrades: on a store at head it must not wait for a writer.
    changing = {"INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "DROP"}
    writes = [
        s for s in executed if s.split()[0].upper() in changing or "user_version =" in s or "advisory" in s
    ]
    assert executed and writes == []
