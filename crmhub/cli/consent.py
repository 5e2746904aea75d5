"""`crmhub consent opt-out|opt-in ID_OR_EMAIL --channel sms`: record consent and act on it at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape
from sqlalchemy import Connection, Engine

from crmhub.cli._context import EXIT_FAILED, EXIT_USAGE, CliContext, exit_codes
from crmhub.cli._output import console, emit_json, print_error, print_note
from crmhub.cli._time import clock, parse_moment
from crmhub.settings import Settings
from crmhub.wiring import record_consent
from sync.consent import ConsentError, ConsentResult
from sync.privacy import find_person
from sync.store import write_transaction

__all__ = ["consent_app", "open_store", "person"]

consent_app = typer.Typer(help="Consent: record an opt-out or opt-in, with its effects on segments at once.")

ChannelOption = Annotated[
    str, typer.Option("--channel", help='The channel, one of [consent] channels (e.g. "sms" or "email").')
]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why, kept as proof.")]
NowOption = Annotated[
    datetime | None,
    typer.Option("--now", help="Record as of this UTC time instead of the clock.", parser=parse_moment),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Person = Annotated[str, typer.Argument(help="Contact id, e-mail address or phone number.")]

# How far a --now may run ahead of this machine's clock (another host's clock, a typed minute).
SKEW = timedelta(minutes=5)


@contextmanager
def open_store(ctx: typer.Context) -> Iterator[tuple[Settings, Engine]]:
    """The settings and the store, disposed of when the command is done (no pooled connection left)."""
    cli = ctx.ensure_object(CliContext)
    settings = cli.settings()
    engine = cli.engine(settings)
    try:
        yield settings, engine
    finally:
        engine.dispose()


def person(conn: Connection, id_or_email: str, *, region: str) -> int:
    """The contact named on the command line (id, merged id, e-mail or phone), or exit code 1."""
    found = find_person(conn, id_or_email, region=region)
    if found is None:
        print_error(
            f'contact "{id_or_email}" not found: pass a contact id, or an e-mail or phone it has '
            "(see `crmhub segments members KEY`)"
        )
        raise typer.Exit(EXIT_FAILED)
    asked = id_or_email.strip()
    if asked.isascii() and asked.isdigit() and int(asked) != found:
        print_note(f"contact {int(asked)} was merged into {found}")
    return found


def _recorded_at(now: datetime | None) -> datetime:
    """The record's time: the clock, or a --now no later than the clock (plus SKEW)."""
    at, wall = clock(now), datetime.now(UTC)
    if at > wall + SKEW:
        # A later record is the one in force: one dated ahead would outrank every statement until then.
        print_error(
            f"--now {at.isoformat(timespec='seconds')} is in the future (the clock says "
            f"{wall.isoformat(timespec='seconds')}): a consent record dated ahead would outrank every "
            "opt-in and opt-out until then; leave --now out, or pass a time that has passed"
        )
        raise typer.Exit(EXIT_USAGE)
    return at


def _channel(settings: Settings, channel: str) -> str:
    try:
        return settings.consent.channel(channel)
    except ConsentError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None


def _apply(
    ctx: typer.Context,
    id_or_email: str,
    channel: str,
    reason: str | None,
    now: datetime | None,
    *,
    out: bool,
    json: bool,
) -> None:
    at = _recorded_at(now)
    with exit_codes(), open_store(ctx) as (settings, engine):
        channel = _channel(settings, channel)
        proof = {"via": f"crmhub consent {'opt-out' if out else 'opt-in'}", "reason": reason}
        region = settings.field_mapping.identity.default_region
        with write_transaction(engine) as conn:
            result = record_consent(
                conn,
                settings,
                contact_id=person(conn, id_or_email, region=region),
                channel=channel,
                opted_out=out,
                source="cli",
                proof=proof,
                now=at,
            )
    _report(result, at, json=json, reaches=settings.consent.channels.get(channel))


def _report(result: ConsentResult, given_at: datetime, *, json: bool, reaches: str | None = None) -> None:
    if json:
        emit_json(result.as_dict())
        return
    note = "" if result.recorded else " (already recorded)"
    if result.outranked:
        given = "opt-out of" if result.status == "opted_out" else "opt-in to"
        newer = {"opted_out": "an opt-out", "opted_in": "an opt-in"}.get(str(result.in_force), "a record")
        at = result.in_force_at.isoformat(timespec="seconds") if result.in_force_at else "?"
        # An opt-out acts all the same (see sync.consent.actions): say so, or the count below puzzles.
        still = "; its identities are suppressed all the same" if result.status == "opted_out" else ""
        # At one moment an opt-out outranks an opt-in (sync.consent.records.in_force_order).
        if result.in_force_at == given_at:
            why = f"recorded at the same moment ({at}) outranks it"
        else:
            why = f"recorded at {at} is newer"
        console.print(
            f"contact {result.contact_id}: {given} {result.channel} recorded{note}, but {newer} "
            f"{why} and stays in force{still}",
            soft_wrap=True,
        )
    else:
        what = "opted out of" if result.status == "opted_out" else "opted in to"
        console.print(escape(f"contact {result.contact_id} {what} {result.channel}{note}"))
    console.print(
        f"  left {result.left} segment(s), entered {result.entered}, "
        f"cancelled {result.cancelled} pending delivery(ies), suppressed {result.suppressed} identity(ies)"
    )
    if result.status == "opted_out" and result.recorded and not result.suppressed:
        by = f"no {reaches}" if reaches else "no e-mail or phone"
        console.print(
            f"  (nothing newly suppressed: the contact has {by} to reach {result.channel} by, or it is "
            "on the suppression list already)",
            soft_wrap=True,
        )
    if result.still_listed:
        # An opt-in lifts only its channel's opt-out: a bounce or an erasure keeps entries back.
        console.print(
            f"[yellow]note[/] the contact's {result.channel} identities are still on the suppression "
            f"list ({', '.join(result.still_listed)}): entries to endpoints reaching them are held back",
            soft_wrap=True,
        )


@consent_app.command("opt-out")
def opt_out_command(
    ctx: typer.Context,
    contact: Person,
    channel: ChannelOption,
    reason: ReasonOption = None,
    now: NowOption = None,
    json: JsonFlag = False,
) -> None:
    """Opt the contact out of a channel: it leaves every segment requiring it, entries are cancelled."""
    _apply(ctx, contact, channel, reason, now, out=True, json=json)


@consent_app.command("opt-in")
def opt_in_command(
    ctx: typer.Context,
    contact: Person,
    channel: ChannelOption,
    reason: ReasonOption = None,
    now: NowOption = None,
    json: JsonFlag = False,
) -> None:
    """Record an opt-in to a channel (lifting its opt-out suppression) and re-evaluate the contact."""
    _apply(ctx, contact, channel, reason, now, out=False, json=json)
