"""`crmhub segments [members KEY]`, `crmhub explain`, `crmhub plan`, `crmhub history`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, NoReturn, Protocol, cast

import typer
from rich.table import Table
from rich.tree import Tree
from sqlalchemy import Connection, Engine

from crmhub.cli._context import EXIT_FAILED, EXIT_USAGE, CliContext, exit_codes
from crmhub.cli._output import console, emit_json, print_error, print_note, print_table
from crmhub.cli._time import clock, parse_moment
from crmhub.cli.consent import person
from crmhub.wiring import declared_fields
from field_mapping.config import FieldMappingConfig
from sync.config import DatabaseConfig
from sync.segments import ScoringConfig, SegmentConfig, evaluate_segments
from sync.segments.config import hint
from sync.segments.explain import Explainer, Explanation, load_contact
from sync.segments.queries import history, members, overview

__all__ = ["explain_command", "history_command", "plan_command", "segments_app"]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ContactOption = Annotated[str, typer.Option("--contact", help="Contact id, e-mail address or phone number.")]
NowOption = Annotated[
    datetime | None,
    typer.Option(
        "--now",
        help="Evaluate as of this UTC time instead of the clock (e.g. 2026-04-01T09:00).",
        parser=parse_moment,
    ),
]

segments_app = typer.Typer(help="Segments: members, counts and latest changes.")


class _SegmentSettings(Protocol):
    """The parts of the settings these commands read (`[database]`, `[segments]`, `[scoring]` ...)."""

    @property
    def database(self) -> DatabaseConfig: ...
    @property
    def field_mapping(self) -> FieldMappingConfig: ...
    @property
    def segments(self) -> Mapping[str, SegmentConfig]: ...
    @property
    def scoring(self) -> ScoringConfig | None: ...


@contextmanager
def _open(ctx: typer.Context) -> Iterator[tuple[_SegmentSettings, Engine]]:
    """The settings and the store, disposed of when the command is done (no pooled connection left)."""
    cli = ctx.ensure_object(CliContext)
    settings = cli.settings()
    engine = cli.engine(settings)
    try:
        # The root Settings carries `segments` and `scoring` once wired; the protocol names what is read.
        yield cast(_SegmentSettings, settings), engine
    finally:
        engine.dispose()


def _unknown_segment(key: str, configured: Mapping[str, Any]) -> NoReturn:
    """Exit 2 naming a key no [segments.<key>] has, with the closest configured one."""
    print_error(
        f'no segment "{key}" in the configuration{hint(key, sorted(configured))}; see `crmhub segments`'
    )
    raise typer.Exit(EXIT_USAGE)


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _contact(conn: Connection, settings: _SegmentSettings, id_or_email: str) -> int:
    # The same lookup as `crmhub contact show` and `crmhub consent`: ids (merged ones too), e-mails, phones.
    return person(conn, id_or_email, region=settings.field_mapping.identity.default_region)


@segments_app.callback(invoke_without_command=True)
def segments_default(ctx: typer.Context, json: JsonFlag = False) -> None:
    """List every segment with its member count and last change (the default)."""
    if ctx.invoked_subcommand is None:
        segments_list(ctx, json=json)


@segments_app.command("list")
def segments_list(ctx: typer.Context, json: JsonFlag = False) -> None:
    """List every segment with its member count and last change."""
    with exit_codes(), _open(ctx) as (settings, engine), engine.connect() as conn:
        rows = overview(conn)
    configured = settings.segments
    stored = {r.key for r in rows}
    if json:
        emit_json(
            [
                {
                    "key": r.key,
                    "name": r.name,
                    "members": r.members,
                    "last_change": _iso(r.last_change),
                    "last_evaluated_at": _iso(r.last_evaluated_at),
                    "rule_version": r.rule_version,
                    "configured": r.key in configured,
                }
                for r in rows
            ]
            + [
                {"key": k, "name": s.name, "members": 0, "configured": True, "evaluated": False}
                for k, s in configured.items()
                if k not in stored
            ]
        )
        return
    table = Table("segment", "name", "members", "last change", "last evaluated")
    for r in rows:
        note = "" if r.key in configured else " [dim](no longer configured)[/]"
        table.add_row(r.key + note, r.name, str(r.members), _when(r.last_change), _when(r.last_evaluated_at))
    for key, segment in configured.items():
        if key not in stored:
            table.add_row(key, segment.name, "-", "-", "not evaluated yet")
    print_table(table)


@segments_app.command("members")
def segments_members(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The segment key, as in [segments.<key>].")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Show at most this many.")] = None,
    json: JsonFlag = False,
) -> None:
    """List the members of one segment."""
    with exit_codes(), _open(ctx) as (settings, engine), engine.connect() as conn:
        rows = members(conn, key, limit=limit)
    if rows is None:
        if key not in settings.segments:
            _unknown_segment(key, settings.segments)
        print_error(f'segment "{key}" has not been evaluated yet: run `crmhub sync` first')
        raise typer.Exit(EXIT_USAGE)
    if json:
        emit_json(
            [
                {
                    "contact_id": r.contact_id,
                    "email": r.email,
                    "entered_at": _iso(r.entered_at),
                    "variant": r.variant,
                }
                for r in rows
            ]
        )
        return
    table = Table("contact", "e-mail", "entered", "variant", title=f"{key}: {len(rows)} members")
    for r in rows:
        table.add_row(str(r.contact_id), r.email or "-", _when(r.entered_at), r.variant or "-")
    print_table(table)


def render_explanation(node: Explanation, parent: Tree | None = None) -> Tree:
    """The rule tree with each node true or false and the evidence it used, for the terminal."""
    mark = "[green]yes[/]" if node.result else "[red]no[/]"
    detail = ", ".join(f"{k}={v}" for k, v in node.detail.items())
    label = f"{mark} {node.label}" + (f" [dim]({detail})[/]" if detail else "")
    branch = Tree(label) if parent is None else parent.add(label)
    for child in node.children:
        render_explanation(child, branch)
    return branch


def explain_command(
    ctx: typer.Context,
    contact: ContactOption,
    segment: Annotated[str, typer.Option("--segment", help="The segment key.")],
    now: NowOption = None,
    json: JsonFlag = False,
) -> None:
    """Why a contact is (or is not) in a segment: each rule node true or false, with the values it used."""
    at = clock(now)
    with exit_codes(), _open(ctx) as (settings, engine):
        if segment not in settings.segments:
            _unknown_segment(segment, settings.segments)
        with engine.connect() as conn:
            data = load_contact(conn, _contact(conn, settings, contact))
    if data is None:
        print_error(f'contact "{contact}" not found: it was erased or merged a moment ago; try again')
        raise typer.Exit(EXIT_FAILED)
    region = settings.field_mapping.identity.default_region
    result = Explainer(settings.segments, data, now=at, region=region).segment(segment)
    if json:
        emit_json(
            {"contact_id": data.id, "segment": segment, "now": at.isoformat(), "member": result.result}
            | result.as_dict()
        )
        return
    verdict = "belongs to" if result.result else "does not belong to"
    console.print(f"contact {data.id} {verdict} {segment} (evaluated at {_when(at)})")
    console.print(render_explanation(result))


def plan_command(ctx: typer.Context, now: NowOption = None, json: JsonFlag = False) -> None:
    """Dry run: per segment, how many contacts would enter and leave now; writes nothing."""
    at = clock(now)
    with exit_codes(), _open(ctx) as (settings, engine):
        rows, at = segment_plan(settings, engine, at)
    if json:
        emit_json({"now": at.isoformat(), "segments": rows})
        return
    print_segment_plan(rows, at)


def segment_plan(
    settings: _SegmentSettings, engine: Engine, at: datetime
) -> tuple[list[dict[str, Any]], datetime]:
    """Per segment, who would enter and leave at `at`, from an evaluation that is rolled back; and when.

    The moment is `at`, or the segments' last evaluation when that is later (time never runs back for
    a segment, sync.segments.evaluate), which a note then says.
    """
    with engine.connect() as conn:
        # Everything runs in a transaction that is always rolled back.
        trans = conn.begin()
        try:
            report = evaluate_segments(
                conn,
                settings.segments,
                now=at,
                scoring=settings.scoring,
                declared=declared_fields(settings.field_mapping),
                region=settings.field_mapping.identity.default_region,
            )
        finally:
            trans.rollback()
    rows = [
        {
            "key": s.key,
            "mode": s.mode,
            "enter": s.entered,
            "leave": s.left,
            "enter_examples": s.entered_examples,
            "leave_examples": s.left_examples,
        }
        for s in report.segments
    ]
    # A sync would not evaluate these either: shown with why, so a typo is caught before it runs.
    held = [
        {"key": key, "mode": "held", "enter": 0, "leave": 0, "held": problems}
        for key, problems in report.held.items()
    ]
    if report.now != at:
        print_note(
            f"--now {_when(at)} is before the segments' last evaluation: planned at {_when(report.now)}, "
            "as a sync would evaluate (time never runs back for a segment)"
        )
    return rows + held, report.now


def print_segment_plan(rows: list[dict[str, Any]], at: datetime) -> None:
    """The segment plan as a table."""
    table = Table(
        "segment",
        "would enter",
        "would leave",
        "example contacts",
        title=f"plan at {_when(at)} (nothing written)",
    )
    for row in rows:
        if row["mode"] == "held":
            table.add_row(row["key"], "-", "-", f"[red]held, not evaluated[/]: {'; '.join(row['held'])}")
            continue
        examples = [
            f"{what} {', '.join(map(str, ids))}"
            for what, ids in (("enter:", row["enter_examples"]), ("leave:", row["leave_examples"]))
            if ids
        ]
        table.add_row(row["key"], str(row["enter"]), str(row["leave"]), "; ".join(examples) or "-")
    print_table(table)


def history_command(ctx: typer.Context, contact: ContactOption, json: JsonFlag = False) -> None:
    """Every segment a contact entered and left, in order."""
    with exit_codes(), _open(ctx) as (settings, engine), engine.connect() as conn:
        contact_id = _contact(conn, settings, contact)
        rows = history(conn, contact_id)
    if json:
        emit_json({"contact_id": contact_id, "transitions": [_history_dict(r) for r in rows]})
        return
    table = Table("#", "when", "segment", "change", "reason", "variant", title=f"contact {contact_id}")
    for r in rows:
        table.add_row(str(r.contact_seq), _when(r.occurred_at), r.segment, r.kind, r.reason, r.variant or "-")
    print_table(table)


def _history_dict(row: Any) -> dict[str, Any]:
    return {
        "contact_seq": row.contact_seq,
        "occurred_at": _iso(row.occurred_at),
        "segment": row.segment,
        "kind": row.kind,
        "reason": row.reason,
        "variant": row.variant,
        "rule_version": row.rule_version,
    }
