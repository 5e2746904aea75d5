"""`crmhub init` and `crmhub check`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import make_url

from crmhub.cli._context import EXIT_USAGE, CliContext, exit_codes, report_config_error
from crmhub.cli._output import console, emit_json, print_error, print_table
from crmhub.config_checks import consent_notes, reference_problems, secret_format_problems
from crmhub.example import example_config_text
from crmhub.mapping_checks import mapping_problems
from crmhub.settings import ConfigError, Settings, missing_secrets
from crmhub.wiring import leftovers, pull_source_names, push_problems, rule_field_problems, stored_field_names
from sync.schedule import jobs
from webhooks.inbound import PROVIDERS

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def init(
    ctx: typer.Context,
    path: Annotated[Path | None, typer.Argument(help="Where to write (default: the --config path).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter crmhub.toml from the annotated example."""
    target = path or ctx.ensure_object(CliContext).path
    if target.exists() and not force:
        print_error(f"{target} already exists: pass --force to overwrite it")
        raise typer.Exit(EXIT_USAGE)
    target.write_text(example_config_text(), encoding="utf-8")
    console.print(f"wrote {target}; edit it, then run `crmhub check`")


def check(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Validate the configuration: every problem with its TOML path, or a summary of what is set up."""
    cli = ctx.ensure_object(CliContext)
    with exit_codes():
        try:
            settings = cli.settings()
            field_problems, field_notes = rule_field_problems(settings)
            problems = [
                *missing_secrets(settings),
                *secret_format_problems(settings, os.environ),
                *field_problems,
                *reference_problems(settings, stored_field_names(settings)),
                *mapping_problems(settings),
                *push_problems(settings),
            ]
            if problems:
                raise ConfigError(problems, file=cli.path)
        except ConfigError as exc:
            if not json:
                raise
            # Scripts read stdout: the problems as JSON there too, with the same exit code.
            found = [{"path": p.path, "message": p.message} for p in exc.problems]
            emit_json({"valid": False, "config": str(cli.path), "problems": found})
            raise typer.Exit(EXIT_USAGE) from None
    summary = (
        {"valid": True}
        | _summary(settings, cli.path)
        | {"notes": field_notes + consent_notes(settings) + leftovers(settings)}
    )
    if not summary["sources"]:
        summary["notes"].append(
            "no source is enabled, so `crmhub sync` pulls nothing: set enabled = true in a "
            "[connectors.<name>] table (stripe, hubspot, typeform, segmentio)"
        )
    if json:
        emit_json(summary)
        return
    table = Table(title=f"crmhub configuration ({cli.path})", show_header=False)
    table.add_row("database", summary["database"])
    for name, source in summary["sources"].items():
        table.add_row(f"source {name}", source)
    table.add_row("mapping rules", str(summary["mapping_rules"]))
    table.add_row("segments", ", ".join(summary["segments"]) or "none")
    table.add_row("webhook endpoints", ", ".join(summary["endpoints"]) or "none")
    table.add_row("inbound webhooks", ", ".join(summary["inbound"]) or "none")
    table.add_row("schedule", "; ".join(summary["schedule"]) or "none (`crmhub serve` only syncs when asked)")
    print_table(table)
    for note in summary["notes"]:
        console.print(f"[yellow]note[/] {escape(note)}")
    console.print("[green]configuration is valid[/]")


def _summary(settings: Settings, path: Path) -> dict[str, Any]:
    sources: dict[str, str] = {}
    for name in settings.connectors.enabled_sources():
        source = getattr(settings.connectors, name)
        sources[name] = getattr(source, "base_url", "receives events pushed to crmhub")
    return {
        "config": str(path),
        "database": make_url(settings.database.url).render_as_string(hide_password=True),
        "sources": sources,
        "mapping_rules": len(settings.field_mapping.rules),
        "segments": sorted(settings.segments),
        "endpoints": sorted(settings.webhooks.endpoints),
        "inbound": [name for name in PROVIDERS if getattr(settings.webhooks.inbound, name).enabled],
        "schedule": [
            f"{job.name} at {job.cron!r}"
            for job in jobs(settings.sync.schedule, pull_source_names(settings, None))
        ],
    }


__all__ = ["check", "init", "report_config_error"]
