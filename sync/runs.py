"""Sync runs and stream cursors: small query functions over `sync_runs` and `cursors`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update
from sqlalchemy.exc import StatementError

from sync.store.tables import cursors, quarantine, records, sync_runs
from sync.store.upsert import upsert


@dataclass(frozen=True, slots=True)
class RunRow:
    """One sync run as recorded."""

    id: int
    source: str | None
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    stats: dict[str, Any]
    error: str | None


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One stream: what it stored, what it quarantined and where its cursor stands."""

    source: str
    stream: str | None  # None: an enabled source that never stored anything
    records: int
    quarantined: int
    cursor: str | None
    cursor_updated_at: datetime | None
    # The run that saved the cursor: how the stream's last pull that moved it ended.
    run_id: int | None = None
    run_status: str | None = None
    run_finished_at: datetime | None = None


# A run cut short by Ctrl-C: what it committed stays, and `crmhub sources` shows it ended.
INTERRUPTED = "interrupted"

# A run `running` for longer was left so by a killed process that no lease take-over closed (one on
# another host, or begun before its holder was recorded): its start would hold every incremental
# segment cut and the HubSpot push's cursor back for good, as no later run of a disabled source
# closes it. Readers of `earliest_storing_start` look back this far and no further.
STILL_STORING_MAX_AGE = timedelta(hours=24)

# The runs begun inside `tracking_runs`, as (id, started_at), for closing them after an interrupt.
_started: ContextVar[list[tuple[int, datetime]] | None] = ContextVar("crmhub_started_runs", default=None)


def start_run(
    conn: Connection, *, source: str | None, trigger: str, now: datetime, holder: str | None = None
) -> int:
    """Record that a run began (under the leases of `holder`, if any) and return its id."""
    result = conn.execute(
        insert(sync_runs)
        .values(source=source, trigger=trigger, status="running", started_at=now, stats={}, holder=holder)
        .returning(sync_runs.c.id)
    )
    run_id = int(result.scalar_one())
    started = _started.get()
    if started is not None:
        started.append((run_id, now))
    return run_id


@contextmanager
def tracking_runs() -> Iterator[list[tuple[int, datetime]]]:
    """Collect the runs this context starts inside the block, for `mark_interrupted` after a Ctrl-C."""
    started: list[tuple[int, datetime]] = []
    token = _started.set(started)
    try:
        yield started
    finally:
        _started.reset(token)


def mark_interrupted(
    conn: Connection, started: Sequence[tuple[int, datetime]], *, now: datetime
) -> list[int]:
    """Close the runs of `started` that are still `running` as interrupted; the ids it closed."""
    closed = []
    for run_id, started_at in started:
        # started_at too: a run whose insert rolled back may have left its id to another process's run.
        result = conn.execute(
            update(sync_runs)
            .where(
                sync_runs.c.id == run_id,
                sync_runs.c.started_at == started_at,
                sync_runs.c.status == "running",
            )
            .values(_closed("interrupted (Ctrl-C)", now))
        )
        if result.rowcount:
            closed.append(run_id)
    return closed


def close_abandoned(
    conn: Connection, holders: Sequence[str], sources: Sequence[str], *, now: datetime
) -> list[int]:
    """Close as interrupted the runs still `running` that the dead `holders` left; the ids it closed.

    Called when a run takes over leases from holders that died (or stalled) without releasing them:
    nothing else would ever close their runs (Ctrl-C does, a kill does not). Only those holders' runs:
    a live run of another process, over every source or not, is never caught. A run recorded with no
    holder (begun before migration 0016) is closed when it pulled one of `sources` alone, whose lease
    the dead holder had; one over several sources is left to `STILL_STORING_MAX_AGE`.
    """
    r = sync_runs.c
    stale = (
        update(sync_runs)
        .where(
            r.status == "running",
            r.started_at < now,
            or_(r.holder.in_(sorted(holders)), and_(r.holder.is_(None), r.source.in_(sorted(sources)))),
            r.trigger != "push",
        )
        .values(_closed("abandoned: its process ended (killed or crashed) before it finished", now))
        .returning(r.id)
    )
    return sorted(int(run_id) for run_id in conn.execute(stale).scalars())


def _closed(why: str, now: datetime) -> dict[str, Any]:
    """The values that close a run cut short: what it committed stays."""
    return {"status": INTERRUPTED, "error": f"{why}; the pages it stored before are kept", "finished_at": now}


def finish_run(
    conn: Connection, run_id: int, *, status: str, stats: dict[str, Any], error: str | None, now: datetime
) -> None:
    """Close a run with its outcome."""
    conn.execute(
        update(sync_runs)
        .where(sync_runs.c.id == run_id)
        .values(status=status, stats=stats, error=error, finished_at=now)
    )


def add_run_error(conn: Connection, run_id: int, error: str) -> None:
    """Add `error` after what a finished run recorded, such as why it stopped before the end."""
    r = sync_runs.c
    conn.execute(
        update(sync_runs).where(r.id == run_id).values(error=func.coalesce(r.error + "; ", "") + error)
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


def error_text(exc: BaseException) -> str:
    """What a run records of `exc`: its message, a store error's without its statement and parameters."""
    # exc.orig, not exc: SQLAlchemy's text carries the statement and its parameters (e-mail addresses...).
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text}" if cause is not exc else text or type(exc).__name__


def recent_runs(conn: Connection, *, limit: int) -> list[RunRow]:
    """The latest `limit` sync runs, newest first."""
    r = sync_runs.c
    columns = [r[f.name] for f in fields(RunRow)]  # not `holder`: the admin API answers with these
    query = select(*columns).order_by(r.id.desc()).limit(limit)
    return [RunRow(**row) for row in conn.execute(query).mappings()]


def stream_overview(conn: Connection, enabled: Sequence[str]) -> list[StreamRow]:
    """Every stream that stored or saved a cursor, then each enabled source that never did."""
    rc, qc, cc = records.c, quarantine.c, cursors.c
    counts = {
        (s, st): n
        for s, st, n in conn.execute(
            select(rc.source, rc.stream, func.count()).group_by(rc.source, rc.stream)
        )
    }
    held = {
        (s, st): n
        for s, st, n in conn.execute(
            select(qc.source, qc.stream, func.count()).group_by(qc.source, qc.stream)
        )
    }
    run = sync_runs.c
    saved = {
        (s, st): rest
        for s, st, *rest in conn.execute(
            select(cc.source, cc.stream, cc.value, cc.updated_at, run.id, run.status, run.finished_at)
            .select_from(cursors)
            .outerjoin(sync_runs, run.id == cc.run_id)
        )
    }
    rows = []
    for source, stream in sorted(set(counts) | set(saved)):
        cursor, saved_at, run_id, status, finished_at = saved.get((source, stream), (None,) * 5)
        rows.append(
            StreamRow(
                source,
                stream,
                counts.get((source, stream), 0),
                held.get((source, stream), 0),
                cursor,
                saved_at,
                run_id,
                status,
                finished_at,
            )
        )
    seen = {source for source, _ in counts} | {source for source, _ in saved}
    rows.extend(StreamRow(source, None, 0, 0, None, None) for source in enabled if source not in seen)
    return rows


def earliest_storing_start(
    conn: Connection, *, now: datetime, since: datetime | None = None
) -> datetime | None:
    """The earliest start (at or before `now`, and from `since` if given) of a sync still running.

    A sync stamps every contact it stores `changed_at = <its start>` and may commit them after a
    later evaluation or push has read: a cut at that reader's own time would skip them. Pushed
    batches commit with their evaluation, and HubSpot pushes stamp no contacts, so neither counts.
    """
    r = sync_runs.c
    started = r.started_at <= now if since is None else r.started_at.between(since, now)
    query = select(func.min(r.started_at)).where(r.status == "running", r.trigger != "push", started)
    found: datetime | None = conn.execute(query).scalar_one_or_none()
    return found
