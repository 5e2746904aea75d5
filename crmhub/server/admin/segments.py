"""`/admin/segments`: counts, members paged by contact id, and explain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, Field

from crmhub.server.admin._common import (
    MAX_ID,
    NO_NUL,
    ContactRef,
    Svc,
    not_found,
    resolve_contact,
    router,
    utc,
)
from sync.segments.config import hint
from sync.segments.explain import Explainer, Explanation, load_contact
from sync.segments.queries import MemberRow, member_page, overview


class SegmentOut(BaseModel):
    """One segment with its member count; `evaluated` is false for one configured but not yet run."""

    key: str
    name: str
    members: int
    last_change: datetime | None = None
    last_evaluated_at: datetime | None = None
    rule_version: str | None = None
    configured: bool
    evaluated: bool


class MembersPage(BaseModel):
    """One page of members by contact id; pass `next_after` as `after` for the next one."""

    segment: str
    members: list[MemberRow]
    next_after: int | None = Field(description="null on the last page")


class ExplanationOut(BaseModel):
    """One rule node: what it tested, whether it held, the evidence, and its sub-nodes."""

    rule: str
    result: bool
    detail: dict[str, Any]
    children: list[ExplanationOut]


class ExplainOut(BaseModel):
    """Why a contact is (or is not) in a segment at `now`."""

    contact_id: int
    segment: str
    now: datetime
    member: bool
    tree: ExplanationOut


@router.get("/segments", summary="Segments with member counts and last change")
def get_segments(svc: Svc) -> list[SegmentOut]:
    """What `crmhub segments` shows: the stored segments, then configured ones not evaluated yet."""
    configured = svc.settings.segments
    with svc.engine.connect() as conn:
        rows = overview(conn)
    stored = [
        SegmentOut(
            key=r.key,
            name=r.name,
            members=r.members,
            last_change=r.last_change,
            last_evaluated_at=r.last_evaluated_at,
            rule_version=r.rule_version,
            configured=r.key in configured,
            evaluated=True,
        )
        for r in rows
    ]
    keys = {r.key for r in rows}
    waiting = [
        SegmentOut(key=k, name=s.name, members=0, configured=True, evaluated=False)
        for k, s in configured.items()
        if k not in keys
    ]
    return stored + waiting


SegmentKey = Annotated[str, Path(max_length=100, pattern=NO_NUL, description="The segment key")]


@router.get(
    "/segments/{key}/members",
    summary="Members of one segment, paged by contact id",
    responses={404: {"description": "No such segment has been evaluated."}},
)
def get_members(
    svc: Svc,
    key: SegmentKey,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="The last contact id of the page before")
    ] = None,
) -> MembersPage:
    """Up to `limit` members after contact `after`."""
    with svc.engine.connect() as conn:
        rows = member_page(conn, key, limit=limit, after=after)
    if rows is None:
        if key not in svc.settings.segments:
            configured = sorted(svc.settings.segments)
            raise not_found(f'segment "{key}" is not in the configuration{hint(key, configured)}')
        raise not_found(f'segment "{key}" has not been evaluated yet: run a sync first')
    return MembersPage(
        segment=key,
        members=rows,
        next_after=rows[-1].contact_id if len(rows) == limit else None,
    )


def _tree(node: Explanation) -> ExplanationOut:
    return ExplanationOut(
        rule=node.label, result=node.result, detail=node.detail, children=[_tree(c) for c in node.children]
    )


@router.get(
    "/segments/{key}/explain/{contact}",
    summary="Why a contact is or is not in a segment: each rule node with its evidence",
    responses={404: {"description": "No such segment in the configuration, or no such contact."}},
)
def get_explain(
    svc: Svc,
    key: SegmentKey,
    contact: ContactRef,
    now: Annotated[datetime | None, Query(description="Evaluate as of this time (UTC if no zone)")] = None,
) -> ExplainOut:
    """What `crmhub explain` shows."""
    if key not in svc.settings.segments:
        raise not_found(f'segment "{key}" is not in the configuration: see GET /admin/segments')
    at = svc.clock() if now is None else utc(now, "now")
    with svc.engine.connect() as conn:
        data = load_contact(conn, resolve_contact(svc, conn, contact))
    if data is None:
        raise not_found(f'contact "{contact}" not found: it was erased or merged a moment ago')
    region = svc.settings.field_mapping.identity.default_region
    result = Explainer(svc.settings.segments, data, now=at, region=region).segment(key)
    return ExplainOut(contact_id=data.id, segment=key, now=at, member=result.result, tree=_tree(result))
