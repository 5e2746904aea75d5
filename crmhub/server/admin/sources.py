"""`/admin`: sources and their runs, and the custom fields."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel

from crmhub.server.admin._common import NO_NUL, Svc, router
from crmhub.wiring import pull_source_names
from sync.registry import FieldInfo, list_fields
from sync.runs import RunRow, StreamRow, recent_runs, stream_overview


class SourcesOut(BaseModel):
    """Every stream and the latest sync run."""

    streams: list[StreamRow]
    last_run: RunRow | None


@router.get("/sources", summary="Each stream's records, quarantine and cursor, with the latest run")
def get_sources(svc: Svc) -> SourcesOut:
    """What `crmhub sources` shows."""
    with svc.engine.connect() as conn:
        streams = stream_overview(conn, pull_source_names(svc.settings, None))
        runs = recent_runs(conn, limit=1)
    return SourcesOut(streams=streams, last_run=runs[0] if runs else None)


@router.get("/runs", summary="Recent sync runs, newest first")
def get_runs(svc: Svc, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> list[RunRow]:
    """The latest sync runs."""
    with svc.engine.connect() as conn:
        return recent_runs(conn, limit=limit)


@router.get("/fields", summary="Custom fields with type, origin and fill rate")
def get_fields(svc: Svc, source: Annotated[str | None, Query(pattern=NO_NUL)] = None) -> list[FieldInfo]:
    """What `crmhub fields` shows."""
    with svc.engine.connect() as conn:
        return list_fields(conn, source=source)
