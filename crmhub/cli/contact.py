"""`crmhub contact show|export|erase ID_OR_EMAIL`: what is held about a person, and erasing it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from crmhub.cli._context import EXIT_USAGE, exit_codes
from crmhub.cli._output import console, emit_json, print_error, print_table
from crmhub.cli._time import clock
from crmhub.cli.consent import JsonFlag, NowOption, Person, open_store, person
from sync.privacy import contact_export, erase_contact
from sync.store import write_transaction
from sync.store.checkpoint import truncate_wal

__all__ = ["contact_app"]

contact_app = typer.Typer(help="One person: show or export what is held about them, or erase it.")

_RECENT = 20


def _load(ctx: typer.Context, id_or_email: str, recent: int | None) -> dict[str, Any]:
    with exit_codes(), open_store(ctx) as (settings, engine), engine.connect() as conn:
        found = person(conn, id_or_email, region=settings.field_mapping.identity.default_region)
        return contact_export(conn, found, recent=recent)


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


@contact_app.command("show")
def show(ctx: typer.Context, contact: Person, json: JsonFlag = False) -> None:
    """Fields, identities, the whole consent history, segments and recent transitions of a contact."""
    data = _load(ctx, contact, _RECENT)
    if json:
        emit_json(data)
        return
    c = data["contact"]
    console.print(f"[bold]contact {c['id']}[/] state {c['state']}, created {c['created_at']}")
    identities = Table("kind", "value", "valid", "source", "first seen", title="identities")
    for i in data["identities"]:
        identities.add_row(
            i["kind"], i["value"], "yes" if i["valid"] else "no", i["source"], i["first_seen_at"]
        )
    print_table(identities)
    fields = Table("field", "value", title="fields")
    for name, value in data["fields"].items():
        fields.add_row(name, _text(value))
    print_table(fields)
    consent = Table(
        "recorded", "channel", "status", "source", "proof", title="consent history (oldest first)"
    )
    for r in data["consent"]:
        proof = ", ".join(f"{k}={v}" for k, v in r["proof"].items() if v is not None)
        consent.add_row(r["recorded_at"], r["channel"], r["status"], r["source"], proof)
    print_table(consent)
    segments = Table("segment", "entered", "variant", title="segments")
    for m in data["memberships"]:
        segments.add_row(m["segment"], m["entered_at"], _text(m["variant"]))
    print_table(segments)
    history = Table("#", "when", "segment", "change", "reason", title=f"latest {_RECENT} transitions")
    for t in data["transitions"]:
        history.add_row(str(t["contact_seq"]), t["occurred_at"], t["segment"], t["kind"], t["reason"])
    print_table(history)


@contact_app.command("export")
def export(ctx: typer.Context, contact: Person) -> None:
    """Everything held about a contact (records, events, consent, deliveries ...) as JSON on stdout."""
    emit_json(_load(ctx, contact, None))


def _confirmed(question: str) -> bool:
    """The person's yes; no when there is no one to ask (end of input, Ctrl-C at the prompt)."""
    try:
        return typer.confirm(question)
    except typer.Abort:
        console.print()  # the prompt's line is still open
        return False


@contact_app.command("erase")
def erase(
    ctx: typer.Context,
    contact: Person,
    yes: Annotated[bool, typer.Option("--yes", help="Erase without asking.")] = False,
    now: NowOption = None,
    json: JsonFlag = False,
) -> None:
    """Delete a contact's data from every table; keep only suppression hashes and an erasure log row."""
    at: datetime = clock(now)
    with exit_codes(), open_store(ctx) as (settings, engine):
        with engine.connect() as conn:
            contact_id = person(conn, contact, region=settings.field_mapping.identity.default_region)
        # Asked outside the transaction: SQLite's write lock must not wait on a person typing.
        if not yes and not _confirmed(f"Erase contact {contact_id} and everything about it?"):
            print_error("nothing erased: answer yes, or pass --yes (a script has no one to answer)")
            raise typer.Exit(EXIT_USAGE)
        with write_transaction(engine) as conn:
            counts = erase_contact(conn, contact_id, now=at)
        with engine.connect() as conn:
            wal_emptied = truncate_wal(conn)
    if json:
        emit_json({"contact_id": contact_id, "deleted": counts, "wal_emptied": wal_emptied})
        return
    deleted = ", ".join(f"{table} {n}" for table, n in counts.items() if n)
    console.print(f"erased contact {contact_id}: {deleted}")
    console.print("its e-mails and phones stay on the suppression list (hashed); erase it in the sources too")
    if not wal_emptied:
        console.print(
            "the SQLite WAL file still holds earlier copies of its pages: another process is "
            "reading the store (crmhub serve?); they stay until the WAL is reused or every "
            "process has closed the store"
        )
