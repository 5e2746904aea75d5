"""`crmhub sync` and `crmhub sources`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from connectors import PULL_SOURCES
from crmhub.cli._context import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliContext,
    exit_codes,
    report_config_error,
)
from crmhub.cli._output import console, emit_json, errors, print_error, print_note, print_table
from crmhub.jobs import run_job
from crmhub.wiring import pull_source_names
from sync.engine import RunReport, StreamReport
from sync.runs import StreamRow, mark_interrupted, stream_overview, tracking_runs
from sync.schedule import Job
from sync.segments.evaluate import SCORING_HELD
from sync.segments.queries import moved
from sync.store import write_transaction

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def sync(
    ctx: typer.Context,
    source: Annotated[
        list[str] | None, typer.Option("--source", "-s", help="Only this source (repeatable).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Ignore saved cursors and re-list everything.")
    ] = False,
    json: JsonFlag = False,
) -> None:
    """Pull every enabled source into the store (incrementally from the saved cursors)."""
    cli = ctx.ensure_object(CliContext)
    with exit_codes():
        settings = cli.settings()
        engine = cli.engine(settings)
        job = Job("sync", "", tuple(pull_source_names(settings, source)))
        if not job.sources:
            tables = ", ".join(f"connectors.{name}" for name in PULL_SOURCES)
            print_note(
                f"no source to pull: none of {tables} is enabled; set enabled = true in one "
                "(`crmhub check` shows the setup). Segments are evaluated all the same"
            )
        clock = partial(datetime.now, UTC)
        with tracking_runs() as started:
            try:
                if json:
                    outcome = run_job(settings, engine, job, clock=clock, trigger="manual", full=full)
                else:
                    with StreamProgress() as progress:
                        outcome = run_job(
                            settings,
                            engine,
                            job,
                            clock=clock,
                            trigger="manual",
                            full=full,
                            on_progress=progress.update,
                        )
            except KeyboardInterrupt:
                _interrupted(engine, started, clock(), full=full)
                raise typer.Exit(EXIT_INTERRUPTED) from None
    report, pushed = outcome.report, outcome.pushed
    for lease, holder in outcome.busy.items():
        print_error(
            f"{lease}: skipped, another run ({holder}) holds it; wait for it to finish, "
            f"or see `crmhub sources` for the last run"
        )
    for lease, holder in outcome.lost.items():
        print_error(
            f"{lease}: lost to another run ({holder}) when this one's lease ran out: stopped at a page "
            "boundary, no HubSpot push; the other run carries on from the stored cursor"
        )
    if outcome.push_skipped is not None:
        print_note(f"hubspot push: skipped, another run ({outcome.push_skipped}) is pushing")
    skipped = {lease: f"held by {holder}" for lease, holder in outcome.busy.items()}
    if report is None:
        if json:
            emit_json({"skipped": skipped})  # every lease was busy: nothing ran
        raise typer.Exit(EXIT_FAILED)
    with engine.connect() as conn:
        counts = moved(conn, run_id=report.run_id)
    held = report.evaluation.held if report.evaluation is not None else {}
    # A held segment that had members is a failure; one never evaluated just waits for its fields.
    waiting = report.evaluation.waiting if report.evaluation is not None else frozenset()
    broken = set(held) - waiting
    if json:
        push: dict[str, Any] | None = None if pushed is None else vars(pushed)
        if outcome.push_error is not None:
            push = {"error": outcome.push_error}
        elif outcome.push_skipped is not None:
            push = {"skipped": f"another run ({outcome.push_skipped}) is pushing"}
        emit_json(_report_json(report, counts) | {"hubspot_push": push, "skipped": skipped})
    else:
        _print_report(report, counts)
        if pushed is not None:
            console.print(
                f"hubspot push: {len(pushed.properties_created)} properties created, "
                f"{len(pushed.properties_retyped)} retyped (their field widened), "
                f"{pushed.contacts_updated:,} contacts updated in {pushed.calls} calls"
            )
            for warning in pushed.warnings:
                print_note(warning)
        for key, problems in held.items():
            name = "lead scores" if key == SCORING_HELD else f"segments.{key}"
            fix = (
                "fix the name, or declare the field with a [[field_mapping.rules]] entry if no source "
                "has sent it yet"
            )
            if key in waiting:
                print_note(f"{name}: not evaluated yet, waiting for its fields: {'; '.join(problems)}; {fix}")
            else:
                kept = "scores kept as they were" if key == SCORING_HELD else "its members kept as they were"
                print_error(f"{name}: not evaluated, {kept}: {'; '.join(problems)}; {fix}")
        if outcome.push_config_error is not None:
            report_config_error(outcome.push_config_error)  # after the pull's report: it is stored
        elif outcome.push_error is not None:
            print_error(f"hubspot push: {outcome.push_error}")
    if outcome.push_config_error is not None:
        raise typer.Exit(EXIT_USAGE)
    if report.failed or outcome.busy or outcome.lost or broken or outcome.push_error is not None:
        raise typer.Exit(EXIT_FAILED)


def _interrupted(
    engine: Engine, started: list[tuple[int, datetime]], now: datetime, *, full: bool = False
) -> None:
    """After Ctrl-C: close the run as interrupted (its committed pages stay) and say how to resume."""
    if not started:
        errors.print("interrupted before the run began: nothing was stored", markup=False)
        return
    closed = [run_id for run_id, _ in started]
    try:
        with write_transaction(engine) as conn:
            closed = mark_interrupted(conn, started, now=now)
    except DBAPIError as exc:
        print_error(
            f"run {_ids(closed)} could not be marked interrupted ({exc.orig}): `crmhub sources` "
            "shows it running until the next sync"
        )
    if not closed:
        # Ctrl-C after the pull had finished (the HubSpot push had not started, or had finished too).
        finished = _ids(run_id for run_id, _ in started)
        message = f"interrupted after run {finished} finished: everything it pulled is stored"
    else:
        message = (
            f"interrupted: run {_ids(closed)} stopped after the last stored page; "
            "run `crmhub sync` again to resume"
        )
        if full:
            # A stream that had not started its re-list has only its incremental cursor to go on.
            message += (
                " (it resumes the streams that were re-listing; those --full had not reached yet "
                "are pulled incrementally: run `crmhub sync --full` again to re-list every stream)"
            )
    errors.print(message, markup=False)


def _ids(runs: Iterable[int]) -> str:
    return ", ".join(f"#{run_id}" for run_id in runs)


class StreamProgress:
    """One live line per stream: records, pages, requests, rate."""

    def __init__(self) -> None:
        self.progress = Progress(
            # Widths that fit 80 columns with "stripe.subscriptions" and "incremental" whole.
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<20}"),
            TextColumn("{task.fields[records]:>8,} records {task.fields[pages]:>5,} pages"),
            TextColumn("{task.fields[rate]:>6,.0f}/s"),
            TextColumn("{task.fields[note]:<11}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StreamProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def update(self, s: StreamReport) -> None:
        """Show the stream's latest figures."""
        name = f"{s.source}.{s.stream}"
        task = self.tasks.get(name)
        note = "[red]failed[/]" if s.error else ("full" if s.full else "incremental")
        if task is None:
            task = self.tasks[name] = self.progress.add_task(
                name, total=None, records=0, pages=0, rate=0.0, note=""
            )
        self.progress.update(task, records=s.records, pages=s.pages, rate=s.rate, note=note)


def _report_json(report: RunReport, counts: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """The run as JSON; `counts` is each segment's (entered, left) over the whole run."""
    evaluation = report.evaluation
    return {
        "run_id": report.run_id,
        "status": report.status,
        "segments": [
            {"segment": r.key, "mode": r.mode, "entered": entered, "left": left}
            for r in (evaluation.segments if evaluation else [])
            for entered, left in (counts.get(r.key, (0, 0)),)
        ],
        "segments_held": evaluation.held if evaluation else {},
        "segments_waiting": sorted(evaluation.waiting) if evaluation else [],
        "contacts_touched": len(report.contacts),
        "pull_seconds": round(report.pull_seconds, 3),
        "streams": [
            {
                "source": s.source,
                "stream": s.stream,
                "records": s.records,
                "events": s.events,
                "quarantined": s.quarantined,
                "requests": s.requests,
                "pages": s.pages,
                "seconds": round(s.seconds, 3),
                "full": s.full,
                "fallback_reason": s.fallback_reason,
                "widenings": s.widenings,
                "error": s.error,
            }
            for s in report.streams
        ],
    }


def _print_report(report: RunReport, counts: dict[str, tuple[int, int]]) -> None:
    table = Table(title=f"sync run {report.run_id}: {report.status}")
    table.add_column("stream", no_wrap=True)
    for column in ("records", "events", "quarantined", "requests", "seconds"):
        table.add_column(column, justify="right")
    table.add_column("mode")
    for s in report.streams:
        mode = "[red]failed[/]" if s.error else ("full" if s.full else "incremental")
        table.add_row(
            f"{s.source}.{s.stream}",
            f"{s.records:,}",
            f"{s.events:,}",
            f"{s.quarantined:,}",
            f"{s.requests:,}",
            f"{s.seconds:.1f}",
            mode,
        )
    print_table(table)
    records = sum(s.records for s in report.streams)
    together = ", the streams side by side" if len(report.streams) > 1 else ""
    console.print(
        f"{records:,} records in {report.pull_seconds:.1f} s{together}; "
        f"{len(report.contacts):,} contacts touched"
    )
    if report.evaluation is not None:
        changes = [f"{key} +{entered} -{left}" for key, (entered, left) in sorted(counts.items())]
        send = "; run `crmhub deliver` to send the webhooks" if changes else ""
        console.print(f"segments: {', '.join(changes) or 'no change'}{send}")
    for s in report.streams:
        if s.fallback_reason:
            console.print(f"[yellow]note[/] {s.source}.{s.stream}: {escape(s.fallback_reason)}")
        for warning in s.widenings:
            console.print(f"[yellow]warning[/] {escape(warning)}")
    for s in report.failed:
        print_error(f"{s.source}.{s.stream}: {s.error}")


def sources(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Each stream's saved cursor, last run and record counts."""
    cli = ctx.ensure_object(CliContext)
    with exit_codes():
        settings = cli.settings()
        engine = cli.engine(settings)
        rows = _source_rows(engine, pull_source_names(settings, None))
    if json:
        emit_json(rows)
        return
    table = Table(title="sources")
    for column in ("stream", "records", "quarantined", "cursor saved at", "last run"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["stream"],
            f"{row['records']:,}",
            f"{row['quarantined']:,}",
            row["cursor_updated_at"] or "never",
            row["last_run"] or "never",
        )
    print_table(table)


def _source_rows(engine: Engine, enabled: list[str]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        streams = stream_overview(conn, enabled)
    return [
        {
            "stream": f"{row.source}.{row.stream}" if row.stream else f"{row.source} (never synced)",
            "records": row.records,
            "quarantined": row.quarantined,
            "cursor": row.cursor,
            "cursor_updated_at": row.cursor_updated_at.isoformat(timespec="seconds")
            if row.cursor_updated_at
            else None,
            "last_run": _run_text(row),
        }
        for row in streams
    ]


def _run_text(row: StreamRow) -> str | None:
    """`#12 succeeded 2026-12-03 08:04`: the run that saved the stream's cursor, as it ended."""
    if row.run_id is None:
        return None
    ended = f" {row.run_finished_at:%Y-%m-%d %H:%M}" if row.run_finished_at else ""
    return f"#{row.run_id} {row.run_status}{ended}"
