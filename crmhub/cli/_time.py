"""Times on the command line: read at the edge, as UTC unless they name a zone."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

__all__ = ["clock", "parse_moment"]


def parse_moment(text: str) -> datetime:
    """An ISO date or time from `--now`, `--since`: `2026-04-01`, `2026-04-01T09:00`, `...+02:00`, `...Z`."""
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"expected an ISO date or time such as 2026-04-01 or 2026-04-01T09:00 (UTC unless it names a "
            f'zone, as in 2026-04-01T09:00+02:00), found "{text}"'
        ) from None


def clock(now: datetime | None) -> datetime:
    """The clock is read here, at the edge; a naive --now is taken as UTC."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
