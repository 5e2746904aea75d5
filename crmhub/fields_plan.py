"""The fields a sync would create or widen: pull from the saved cursors, map, store nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy import Engine

from crmhub.settings import Settings
from crmhub.wiring import build_sources, declare_source_types, pull_source_names
from field_mapping.mapper import Mapper
from field_mapping.registry import FieldChange, FieldPlan
from sync.field_moves import move_values
from sync.fields import load_definitions, load_fields
from sync.runs import load_cursor

__all__ = ["FieldsDryRun", "plan_fields"]


@dataclass(frozen=True)
class FieldsDryRun:
    """What the pages read would do to the field definitions, and how much was read."""

    plan: FieldPlan
    records: int
    pages: int
    complete: bool  # every stream was read to its end (otherwise: a sample of the next sync)
    # Field -> how many stored values its retype (a rule's new type) would clear.
    cleared: Mapping[str, int] = field(default_factory=dict)


def plan_fields(
    settings: Settings, engine: Engine, http: httpx.Client, *, now: datetime, pages: int
) -> FieldsDryRun:
    """Read up to `pages` pages per stream from where the next sync would start, and map them."""
    with engine.connect() as conn:
        mapper = Mapper(settings.field_mapping, known=load_definitions(conn))
        sources = build_sources(settings, pull_source_names(settings, None), http)
        declare_source_types(mapper, sources)
        cursors = {
            (source.name, stream.name): load_cursor(conn, source.name, stream.name)
            for source in sources
            for stream in source.streams
        }
    records = read = 0
    complete = True
    for source in sources:
        for stream in source.streams:
            # The same generator a sync runs; leaving it early stops the pull, and nothing is saved.
            for count, batch in enumerate(stream.pull(cursors[(source.name, stream.name)], now=now)):
                if count == pages:
                    complete = False
                    break
                read += 1
                for record in batch.records:
                    mapper.map_record(record)
                records += len(batch.records)
    plan = mapper.plan()
    return FieldsDryRun(plan, records, read, complete, cleared_by_retypes(engine, plan.retype))


def cleared_by_retypes(engine: Engine, changes: Sequence[FieldChange]) -> dict[str, int]:
    """How many stored values each retype would clear: the sync's own conversion, rolled back."""
    if not changes:
        return {}
    cleared: dict[str, int] = {}
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            fields = load_fields(conn)
            for change in changes:
                cleared[change.name] = move_values(
                    conn, fields[change.name].id, change.old, change.new
                ).cleared
        finally:
            transaction.rollback()
    return cleared
