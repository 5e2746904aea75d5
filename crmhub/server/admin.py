"""`/admin`: sources, runs, fields, segments, contacts and deliveries to read; replay and sync-now to act."""

from __future__ import annotations

import hmac
import logging
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import Connection

from crmhub.server.services import Services, services
from crmhub.settings import ConfigError
from crmhub.wiring import pull_source_names
from sync.contact_view import ContactEvent, ContactView, contact_events, contact_view
from sync.locks import holder_of
from sync.registry import FieldInfo, list_fields
from sync.runs import RunRow, StreamRow, recent_runs, stream_overview
from sync.schedule import Job
from sync.segments.explain import Explainer, Explanation, load_contact
from sync.segments.queries import MemberRow, find_contact, member_page, overview
from sync.store import write_transaction
from webhooks.admin import attempts_of, list_deliveries, replay

__all__ = ["router"]

log = logging.getLogger("crmhub.serve")

# The largest id the stores hold; a larger number in a request is refused (422), never sent to a driver.
MAX_ID = 2**63 - 1
# PostgreSQL text cannot hold NUL; refusing it here keeps such input a 422 on every backend.
NO_NUL = r"^[^\x00]*$"

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The token held by the environment variable that `[server] admin_token_env` names.",
)


def require_admin(
    svc: Annotated[Services, Depends(services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Let the request through only with `Authorization: Bearer <the admin token>`."""
    env = svc.settings.server.admin_token_env
    expected = svc.environ.get(env, "")
    if not expected:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"admin API disabled: environment variable {env} is unset or empty; set it to a long random "
            f"token (e.g. `export {env}=$(openssl rand -hex 32)`) and restart crmhub serve",
        )
    given = credentials.credentials if credentials is not None else ""
    # compare_digest takes as long whatever the first differing byte: no guessing the token by timing.
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"admin API: send `Authorization: Bearer <token>` with the token in {env}",
            headers={"WWW-Authenticate": "Bearer"},
        )


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={
        401: {"description": "Missing or wrong bearer token."},
        503: {"description": "The admin token's environment variable is unset."},
    },
)
Svc = Annotated[Services, Depends(services)]


def _not_found(message: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, message)


def _utc(moment: datetime, name: str) -> datetime:
    try:
        at = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        at = datetime.min.replace(tzinfo=UTC)
    # Rules subtract windows of years from the time; the far ends of the calendar would overflow.
    if not 1900 <= at.year <= 9000:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: expected a year from 1900 to 9000"
        )
    return at


# --- sources, runs, fields ------------------------------------------------------------------------


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


# --- segments -------------------------------------------------------------------------------------


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
        raise _not_found(f'segment "{key}" has not been evaluated: check the key or run a sync first')
    return MembersPage(
        segment=key,
        members=rows,
        next_after=rows[-1].contact_id if len(rows) == limit else None,
    )


def _tree(node: Explanation) -> ExplanationOut:
    return ExplanationOut(
        rule=node.label, result=node.result, detail=node.detail, children=[_tree(c) for c in node.children]
    )


ContactRef = Annotated[
    str, Path(max_length=320, pattern=NO_NUL, description="A contact id or an e-mail address it has")
]


def _contact_id(conn: Connection, contact: str) -> int:
    found = find_contact(conn, contact)
    if found is None:
        raise _not_found(f'contact "{contact}" not found: pass a contact id or an e-mail address it has')
    return found


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
        raise _not_found(f'segment "{key}" is not in the configuration: see GET /admin/segments')
    at = svc.clock() if now is None else _utc(now, "now")
    with svc.engine.connect() as conn:
        data = load_contact(conn, _contact_id(conn, contact))
    if data is None:
        raise _not_found(f'contact "{contact}" not found: it was erased or merged a moment ago')
    result = Explainer(svc.settings.segments, data, now=at).segment(key)
    return ExplainOut(contact_id=data.id, segment=key, now=at, member=result.result, tree=_tree(result))


# --- contacts -------------------------------------------------------------------------------------


class EventsPage(BaseModel):
    """A page of events, latest first; pass `next_before` as `before` for older ones."""

    contact_id: int
    events: list[ContactEvent]
    next_before: int | None = Field(description="null on the last page")


def _plain(value: Any) -> Any:
    # Decimal fields would otherwise reach JSON as strings.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


@router.get(
    "/contacts/{contact}",
    summary="A contact: fields, identities, memberships and history",
    responses={404: {"description": "No such contact."}},
)
def get_contact(svc: Svc, contact: ContactRef) -> ContactView:
    """The contact by id or e-mail address."""
    with svc.engine.connect() as conn:
        view = contact_view(conn, _contact_id(conn, contact))
    if view is None:
        raise _not_found(f'contact "{contact}" not found: it was erased or merged a moment ago')
    return replace(view, fields={name: _plain(value) for name, value in view.fields.items()})


@router.get(
    "/contacts/{contact}/events",
    summary="A contact's events, latest first, paged",
    responses={404: {"description": "No such contact."}},
)
def get_contact_events(
    svc: Svc,
    contact: ContactRef,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="The last event id of the page before")
    ] = None,
) -> EventsPage:
    """Up to `limit` events older than event `before`."""
    with svc.engine.connect() as conn:
        contact_id = _contact_id(conn, contact)
        rows = contact_events(conn, contact_id, limit=limit, before=before)
    return EventsPage(
        contact_id=contact_id,
        events=rows,
        next_before=rows[-1].id if len(rows) == limit else None,
    )


# --- deliveries -----------------------------------------------------------------------------------

DeliveryStatus = Literal["pending", "leased", "failed", "dead", "succeeded", "suppressed", "cancelled"]


class AttemptOut(BaseModel):
    """One attempt to send a delivery."""

    attempted_at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response_excerpt: str | None


class DeliveryOut(BaseModel):
    """One transition sent to one endpoint, with its attempts."""

    id: int
    endpoint: str
    webhook_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    reason: str | None
    created_at: datetime
    kind: str
    contact_id: int
    segment: str
    tries: list[AttemptOut] = Field(description="Each attempt, oldest first")


class ReplayIn(BaseModel):
    """What to send again: one delivery by id, or those created since a time and/or in a status."""

    id: int | None = Field(default=None, ge=1, le=MAX_ID, description="This delivery, whatever its status")
    since: datetime | None = Field(default=None, description="Created at or after (UTC if no zone)")
    status: Literal["dead", "failed", "cancelled"] | None = Field(
        default=None, description="Only this status (default: all three)"
    )
    endpoint: str | None = Field(default=None, description="Only this endpoint")

    @model_validator(mode="after")
    def _says_what(self) -> ReplayIn:
        if self.id is None and self.since is None and self.status is None:
            raise ValueError("say what to replay: id, since or status")
        return self


class ReplayOut(BaseModel):
    """How many deliveries are due again."""

    replayed: int


@router.get("/deliveries", summary="Recent deliveries with their attempts, newest first")
def get_deliveries(
    svc: Svc,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    endpoint: Annotated[str | None, Query(pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DeliveryOut]:
    """What `crmhub deliveries` shows, plus each attempt."""
    with svc.engine.connect() as conn:
        rows = list_deliveries(conn, status=status_, endpoint=endpoint, limit=limit)
        tries = attempts_of(conn, [r["id"] for r in rows])
    return [DeliveryOut.model_validate(r | {"tries": tries[r["id"]]}) for r in rows]


@router.post(
    "/deliveries/replay",
    summary="Send deliveries again under their original webhook-id (write)",
    responses={404: {"description": "No such delivery, or it is being sent right now."}},
)
def post_replay(svc: Svc, body: ReplayIn) -> ReplayOut:
    """What `crmhub deliveries replay` does; the worker is woken at once."""
    if body.endpoint is not None and body.endpoint not in svc.settings.webhooks.endpoints:
        known = ", ".join(svc.settings.webhooks.endpoints) or "none"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f'endpoint "{body.endpoint}" is not configured: one of {known}',
        )
    since = _utc(body.since, "since") if body.since is not None else None
    with write_transaction(svc.engine) as conn:
        count = replay(
            conn,
            svc.clock(),
            delivery_id=body.id,
            since=since,
            status=body.status,
            endpoint=body.endpoint,
        )
    if body.id is not None and count == 0:
        raise _not_found(f"delivery {body.id}: not found, or being sent right now")
    svc.wake_worker()
    return ReplayOut(replayed=count)


# --- sync now -------------------------------------------------------------------------------------


class SyncIn(BaseModel):
    """Which sources to pull (default: every enabled one) and whether to ignore the saved cursors."""

    sources: list[str] | None = None
    full: bool = False


class SyncAccepted(BaseModel):
    """The run started in the background; see GET /admin/runs for its outcome."""

    job: str
    sources: list[str]
    full: bool
    busy: dict[str, str] = Field(
        description="Leases another run holds now (lease -> holder): those sources are skipped by this run"
    )


@router.post(
    "/sync",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Start a sync now, in the background (write)",
    responses={422: {"description": "An unknown or disabled source."}},
)
def post_sync(svc: Svc, body: Annotated[SyncIn | None, Body()] = None) -> SyncAccepted:
    """Pull now; answers at once with what will run and which sources another run still holds."""
    wanted = body or SyncIn()
    try:
        job = svc.sync_job(wanted.sources)
    except ConfigError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    with svc.engine.connect() as conn:
        now = svc.clock()
        held = {lease: holder_of(conn, lease, now=now) for lease in job.leases}
    svc.start_thread(_run_sync, svc, job, wanted.full, name=f"crmhub-api-{job.name}")
    return SyncAccepted(
        job=job.name,
        sources=list(job.sources),
        full=wanted.full,
        busy={lease: holder for lease, holder in held.items() if holder is not None},
    )


def _run_sync(svc: Services, job: Job, full: bool) -> None:
    try:
        outcome = svc.run(job, trigger="api", full=full)
    except Exception:
        # Nobody waits on this thread: the failure goes to the log and the run's row says it failed.
        log.exception("admin: %s failed", job.name)
        return
    for lease, holder in outcome.busy.items():
        log.warning("admin: %s skipped %s: held by %s", job.name, lease, holder)
