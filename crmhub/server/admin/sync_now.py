"""`POST /admin/sync`: start a sync on a thread that shutdown waits for."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Body, HTTPException, status
from pydantic import BaseModel, Field

from crmhub.jobs import EXPLAINED_FAILURES
from crmhub.server.admin._common import Svc, router
from crmhub.server.services import Services
from crmhub.settings import ConfigError
from sync.locks import holder_of
from sync.schedule import Job

log = logging.getLogger("crmhub.serve")


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
    except EXPLAINED_FAILURES as exc:
        log.error("admin: %s failed: %s", job.name, exc)
        return
    except Exception:
        # Nobody waits on this thread: the failure goes to the log and the run's row says it failed.
        log.exception("admin: %s failed", job.name)
        return
    if outcome.push_error is not None:
        log.error("admin: %s failed: %s", job.name, outcome.push_error)  # the pull itself was stored
    for lease, holder in outcome.busy.items():
        log.warning("admin: %s skipped %s: held by %s", job.name, lease, holder)
