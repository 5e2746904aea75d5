"""Sync runs and stream cursors: small query functions over `sync_runs` and `cursors`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from sync.store.tables import cursors, sync_runs
from sync.store.upsert import upsert


def start_run(conn: Connection, *, source: str | None, trigger: str, now: datetime) -> int:
    """Record that a run began and return its id."""
    result = conn.execute(
        insert(sync_runs)
        .values(source=source, trigger=trigger, status="running", started_at=now, stats={})
        .returning(sync_runs.c.id)
    )
    return int(result.scalar_one())


def finish_run(
    conn: Connection, run_id: int, *, status: str, stats: dict[str, Any], error: str | None, now: datetime
) -> None:
    """Close a run with its outcome."""
    conn.execute(
        update(sync_runs)
        .where(sync_runs.c.id == run_id)
        .values(status=status, stats=stats, error=error, finished_at=now)
    )


def load_cursor(conn: Connection, source: str, stream: str) -> str | None:
    """The saved cursor of a stream, or None before its first committed batch."""
    return conn.execute(
        select(cursors.c.value).where(cursors.c.source == source, cursors.c.stream == stream)
    ).scalar_one_or_none()


def save_cursor(
    conn: Connection, source: str, stream: str, value: str, *, run_id: int, now: datetime
) -> None:
    """Save a stream's cursor; call it in the transaction that stored what the cursor covers."""
    upsert(
        conn,
        cursors,
        [{"source": source, "stream": stream, "value": value, "updated_at": now, "run_id": run_id}],
        keys=["source", "stream"],
        update=["value", "updated_at", "run_id"],
    )


def clear_cursors(conn: Connection, source: str) -> None:
    """Forget every cursor of a source, so its next run is a full one."""
    conn.execute(cursors.delete().where(cursors.c.source == source))
