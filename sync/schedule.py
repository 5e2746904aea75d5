"""Schedules from `[sync.schedule]`: which job runs when, computed from cron expressions and `now`.

A job is either a sync of some sources or a re-evaluation of the segments (for rules that move with time
alone). Each job holds one lease per thing it works on (`sync:stripe`, `segments`), so two jobs, two
processes or two hosts never run the same thing at once; a job that finds its lease taken reports that
the previous run overran instead of starting a second one.

Cron expressions are read in UTC, whatever the host's time zone: "0 9 * * *" fires at 09:00 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors import PULL_SOURCES

__all__ = ["Job", "ScheduleConfig", "SyncConfig", "jobs", "next_run"]


def _valid_cron(value: str | None) -> str | None:
    if value is not None and not croniter.is_valid(value):
        raise ValueError(
            f'expected a cron expression such as "*/15 * * * *" (minute hour day month weekday, '
            f'optionally a sixth field for seconds), found "{value}"'
        )
    return value


class ScheduleConfig(BaseModel):
    """`[sync.schedule]`: when `crmhub serve` syncs and re-evaluates on its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: str | None = None
    sources: dict[str, str] = Field(default_factory=dict)
    segments: str | None = None
    lease_seconds: int = Field(default=600, ge=10)

    _cron = field_validator("every", "segments")(_valid_cron)

    @field_validator("sources")
    @classmethod
    def _valid_source_crons(cls, value: dict[str, str]) -> dict[str, str]:
        for name, cron in value.items():
            if name not in PULL_SOURCES:
                raise ValueError(f"expected a source among {', '.join(PULL_SOURCES)}, found {name!r}")
            _valid_cron(cron)
        return value


class SyncConfig(BaseModel):
    """`[sync]`: how syncs run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)


@dataclass(frozen=True, slots=True)
class Job:
    """One job: a name, its cron expression, and the sources it syncs (a segments job syncs none)."""

    name: str
    cron: str
    sources: tuple[str, ...]
    kind: Literal["sync", "segments"] = "sync"

    @property
    def leases(self) -> tuple[str, ...]:
        """The lease names this job holds while it runs."""
        if self.kind == "segments":
            return ("segments",)
        return tuple(f"sync:{s}" for s in self.sources)


def jobs(config: ScheduleConfig, enabled: list[str]) -> list[Job]:
    """The jobs a schedule asks for; a source with its own cron leaves the `every` job."""
    own = {name: cron for name, cron in config.sources.items() if name in enabled}
    out = [Job(f"sync:{name}", cron, (name,)) for name, cron in sorted(own.items())]
    rest = tuple(name for name in enabled if name not in own)
    if config.every and rest:
        out.insert(0, Job("sync", config.every, rest))
    if config.segments:
        out.append(Job("segments", config.segments, (), kind="segments"))
    return out


def next_run(cron: str, after: datetime) -> datetime:
    """The first time after `after` (an aware datetime) that `cron`, read in UTC, fires; in UTC."""
    # croniter reads the fields in `after`'s own zone: a clock in local time would move every schedule.
    moment: datetime = croniter(cron, after.astimezone(UTC)).get_next(datetime)
    return moment
