"""The fields a sync would create or widen: pull from the saved cursors, map, store nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import httpx
from sqlalchemy import Engine

from crmhub.settings import Settings
from crmhub.wiring import build_sources, pull_source_names
from field_mapping.mapper import Mapper
from field_mapping.registry import FieldPlan
from sync.fields import load_definitions
from sync.runs import load_cursor

__all__ = ["FieldsDryRun", "plan_fields"]


@dataclass(frozen=True)
class FieldsDryRun:
    """What the pages read would do to the field definitions, and how much was read."""

    plan: FieldPlan
    records: int
    pages: int
    complete: bool  # every stream was read to its end (otherwise: a sample of the next sync)


def plan_fields(
    settings: Settings, engine: Engine, http: httpx.Client, *, now: datetime, pages: int
) -> FieldsDryRun:
    """Read up to `pages` pages per stream from where the next sync would start, and map them."""
    with engine.connect() as conn:
        mapper = Mapper(settings.field_mapping, known=load_definitions(conn))
        sources = build_sources(settings, pull_source_names(settings, None), http)
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
    return FieldsDryRun(mapper.plan(), records, read, complete)
