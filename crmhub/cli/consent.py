"""`crmhub consent opt-out|opt-in ID_OR_EMAIL --channel sms`: record consent and act on it at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from sqlalchemy import Engine

from crmhub.cli._context import EXIT_FAILED, CliContext, exit_codes
from crmhub.cli._output import console, emit_json, print_error
from crmhub.settings import Settings
from crmhub.wiring import evaluator
from sync.consent import ConsentResult, endpoints_by_channel, opt_in, opt_out
from sync.privacy import find_person
from sync.store import write_transaction

__all__ = ["clock", "consent_app", "open_store", "person"]

consent_app = typer.Typer(help="Consent: record an opt-out or opt-in, with its effects on segments at once.")

ChannelOption = Annotated[str, typer.Option("--channel", help='The channel, e.g. "sms" or "email".')]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why, kept as proof.")]
NowOption = Annotated[
    datetime | None, typer.Option("--now", help="Record as of this UTC time instead of the clock.")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Person = Annotated[str, typer.Argument(help="Contact id, e-mail address or phone number.")]


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


def clock(now: datetime | None) -> datetime:
    """The clock is read here, at the edge; a naive --now is taken as UTC."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def person(conn: Any, settings: Settings, id_or_email: str) -> int:
    """The contact named on the command line, or a clear error and exit code 1."""
    found = find_person(conn, id_or_email, region=settings.field_mapping.identity.default_region)
    if found is None:
        print_error(
            f'contact "{id_or_email}" not found: pass a contact id, or an e-mail or phone it has '
            "(see `crmhub segments members KEY`)"
        )
        raise typer.Exit(EXIT_FAILED)
    return found


def _apply(
    ctx: typer.Context, id_or_email: str, channel: str, reason: str | None, at: datetime, out: bool
) -> None:
    with exit_codes(), open_store(ctx) as (settings, engine):
        proof = {"via": f"crmhub consent {'opt-out' if out else 'opt-in'}", "reason": reason}
        requirements = {n: e.requires_consent for n, e in settings.webhooks.endpoints.items()}
        with write_transaction(engine) as conn:
            contact_id = person(conn, settings, id_or_email)
            common: dict[str, Any] = {
                "contact_id": contact_id,
                "channel": channel,
                "source": "cli",
                "proof": proof,
                "now": at,
                "evaluate": evaluator(settings),
                "config": settings.consent,
            }
            if out:
                wanted = endpoints_by_channel(requirements).get(channel, [])
                result: ConsentResult = opt_out(conn, endpoints=wanted, **common)
            else:
                result = opt_in(conn, **common)
    _report(result, json=False)


def _report(result: ConsentResult, *, json: bool) -> None:
    if json:
        emit_json(result.as_dict())
        return
    what = "opted out of" if result.status == "opted_out" else "opted in to"
    note = "" if result.recorded else " (already recorded)"
    console.print(f"contact {result.contact_id} {what} {result.channel}{note}")
    console.print(
        f"  left {result.left} segment(s), entered {result.entered}, "
        f"cancelled {result.cancelled} pending delivery(ies), suppressed {result.suppressed} identity(ies)"
    )


@consent_app.command("opt-out")
def opt_out_command(
    ctx: typer.Context,
    contact: Person,
    channel: ChannelOption,
    reason: ReasonOption = None,
    now: NowOption = None,
) -> None:
    """Opt the contact out of a channel: it leaves every segment requiring it, entries are cancelled."""
    _apply(ctx, contact, channel, reason, clock(now), out=True)


@consent_app.command("opt-in")
def opt_in_command(
    ctx: typer.Context,
    contact: Person,
    channel: ChannelOption,
    reason: ReasonOption = None,
    now: NowOption = None,
) -> None:
    """Record an opt-in to a channel (lifting its opt-out suppression) and re-evaluate the contact."""
    _apply(ctx, contact, channel, reason, clock(now), out=False)
