"""Retention: `crmhub db prune` deletes finished sync runs and the attempts of finished deliveries.

What goes, older than a cutoff:

- `sync_runs` that finished before it (never one still `running`, nor the run a stream's cursor
  names, nor the latest finished run of each source and trigger: `crmhub sources` and `crmhub hygiene report`
  show those). The records, quarantined items and transitions a run wrote stay; they lose their
  `run_id` (what the foreign key's ON DELETE SET NULL would do), in batches of their own.
- `delivery_attempts` of deliveries that finished before it (succeeded, dead, cancelled, suppressed).
  The delivery keeps its status, its count of attempts and its last status code.

Deliveries and transitions are never deleted: a cap counts an endpoint's deliveries in its window,
and a `segment.left` goes only to an endpoint that was told of the entry (webhooks.eligibility), which
the oldest entry deliveries say. Work is done `batch` rows to a transaction, so SQLite's write lock
is never held long beside a running sync or delivery worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Engine, Table, and_, delete, exists, func, select, update

from sync.exceptions import SyncError
from sync.store import write_transaction
from sync.store.tables import (
    cursors,
    deliveries,
    delivery_attempts,
    quarantine,
    records,
    sync_runs,
    transitions,
)

__all__ = [
    "BATCH",
    "FINISHED_DELIVERIES",
    "MIN_AGE",
    "PruneRefusedError",
    "PruneReport",
    "check_age",
    "parse_age",
    "prune",
]

# Runs and attempts are what an incident is looked into with ("why did this person get two SMS?"):
# a month of them stays whatever is asked.
MIN_AGE = timedelta(days=30)
BATCH = 10_000
# Deliveries that will never be attempted again (webhooks.eligibility.OPEN_STATUSES are the others).
FINISHED_DELIVERIES = ("succeeded", "dead", "cancelled", "suppressed")

_AGE = re.compile(r"^\s*(\d+)\s*([dw])\s*$")
_UNITS = {"d": timedelta(days=1), "w": timedelta(weeks=1)}
# The tables whose rows name the run that wrote them (cursors are left to the foreign key: a dozen rows).
_WRITTEN_BY_RUN: tuple[Table, ...] = (records, quarantine, transitions)


class PruneRefusedError(SyncError):
    """The cutoff asked for is too recent to prune at."""


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a prune deleted (or, on a dry run, would delete)."""

    cutoff: datetime
    dry_run: bool
    sync_runs: int
    delivery_attempts: int
    # Runs older than the cutoff still `running` (a process killed mid-run): never deleted.
    running_kept: int


def parse_age(text: str) -> timedelta:
    """Parse `--older-than`: `90d` or `13w`."""
    match = _AGE.match(text)
    if not match or int(match[1]) < 1:
        raise ValueError(f'expected an age in days or weeks such as "90d" or "13w", found "{text}"')
    return int(match[1]) * _UNITS[match[2]]


def check_age(older_than: timedelta, cap_windows: Iterable[timedelta] = ()) -> None:
    """Refuse an age under MIN_AGE or under the longest cap window, saying why."""
    longest = max(cap_windows, default=None)
    if older_than < MIN_AGE:
        raise PruneRefusedError(
            f"prune: --older-than {_days(older_than)} is under {_days(MIN_AGE)}: the sync runs and "
            "delivery attempts of the last month are what an incident is looked into with; pass 30d or more"
        )
    if longest is not None and older_than < longest:
        raise PruneRefusedError(
            f"prune: --older-than {_days(older_than)} is under the longest frequency cap's window "
            f"({_days(longest)}, webhooks.endpoints.*.cap): every delivery a cap still counts keeps "
            f"its attempts, the record of why a message was held back; pass {_days(longest)} or more"
        )


def _days(age: timedelta) -> str:
    return f"{age.days}d" if age == timedelta(days=age.days) else str(age)


def prune(
    engine: Engine,
    *,
    now: datetime,
    older_than: timedelta,
    cap_windows: Iterable[timedelta] = (),
    dry_run: bool = False,
    batch: int = BATCH,
) -> PruneReport:
    """Delete finished runs and finished deliveries' attempts from before `now - older_than`."""
    check_age(older_than, cap_windows)
    cutoff = now - older_than
    with engine.connect() as conn:
        keep = _kept_runs(conn)
        r = sync_runs.c
        running_kept = conn.execute(
            select(func.count()).where(r.status == "running", r.started_at < cutoff)
        ).scalar_one()
        last_run = int(conn.execute(select(func.max(r.id))).scalar() or 0)
        last_attempt = int(conn.execute(select(func.max(delivery_attempts.c.id))).scalar() or 0)
        if dry_run:
            runs = conn.execute(select(func.count()).where(_old_run(cutoff, keep))).scalar_one()
            attempts = conn.execute(
                select(func.count()).select_from(delivery_attempts).where(_old_attempt(cutoff))
            ).scalar_one()
            return PruneReport(cutoff, True, int(runs), int(attempts), int(running_kept))
    runs = _prune_runs(engine, cutoff, keep, last_run, batch)
    attempts = _prune_attempts(engine, cutoff, last_attempt, batch)
    return PruneReport(cutoff, False, runs, attempts, int(running_kept))


def _kept_runs(conn: Connection) -> list[int]:
    """Runs kept whatever their age: the ones cursors name, the latest finished of each source and trigger."""
    r = sync_runs.c
    named = conn.execute(select(cursors.c.run_id).where(cursors.c.run_id.is_not(None))).scalars()
    latest = conn.execute(
        select(func.max(r.id)).where(r.status != "running").group_by(r.source, r.trigger)
    ).scalars()
    return sorted({int(i) for i in (*named, *latest)})


def _old_run(cutoff: datetime, keep: list[int]) -> ColumnElement[bool]:
    r = sync_runs.c
    return and_(r.status != "running", r.finished_at < cutoff, r.id.not_in(keep))


def _old_attempt(cutoff: datetime) -> ColumnElement[bool]:
    d = deliveries.c
    return exists().where(
        d.id == delivery_attempts.c.delivery_id, d.status.in_(FINISHED_DELIVERIES), d.updated_at < cutoff
    )


def _prune_runs(engine: Engine, cutoff: datetime, keep: list[int], last: int, batch: int) -> int:
    """Delete old runs `batch` ids at a time, first unlinking what they wrote `batch` rows at a time."""
    r = sync_runs.c
    deleted = 0
    for low in range(0, last, batch):
        in_range = and_(r.id > low, r.id <= low + batch, _old_run(cutoff, keep))
        with engine.connect() as conn:
            doomed = [int(i) for i in conn.execute(select(r.id).where(in_range)).scalars()]
        if not doomed:
            continue
        for table in _WRITTEN_BY_RUN:
            _unlink(engine, table, doomed, batch)
        with write_transaction(engine) as conn:
            # The conditions again: a run cannot start again, but this keeps the delete honest alone.
            deleted += conn.execute(delete(sync_runs).where(r.id.in_(doomed), in_range)).rowcount
    return deleted


def _unlink(engine: Engine, table: Table, runs: list[int], batch: int) -> None:
    """Set `table.run_id` to NULL where it names one of `runs`, `batch` rows to a transaction."""
    c = table.c
    while True:
        chosen = select(c.id).where(c.run_id.in_(runs)).limit(batch)
        with write_transaction(engine) as conn:
            done = conn.execute(update(table).where(c.id.in_(chosen)).values(run_id=None)).rowcount
        if done < batch:
            return


def _prune_attempts(engine: Engine, cutoff: datetime, last: int, batch: int) -> int:
    """Delete the old attempts of finished deliveries, walking `batch` attempt ids to a transaction."""
    a = delivery_attempts.c
    deleted = 0
    for low in range(0, last, batch):
        with write_transaction(engine) as conn:
            deleted += conn.execute(
                delete(delivery_attempts).where(a.id > low, a.id <= low + batch, _old_attempt(cutoff))
            ).rowcount
    return deleted
