"""The Segment.com Tracking API, so `segment-analytics-python` (or any Segment library) can send to crmhub."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from crmhub.server.inbound import answer, read_request
from crmhub.server.services import Services, services
from webhooks.inbound import TRACKING_KINDS, TrackingKind

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["Segment.com tracking API"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON or a message the Segment Spec does not allow"},
    401: {"description": "Missing or wrong write key (HTTP Basic auth, the write key as user name)"},
    413: {"description": "A message over 32 KB or a batch over 500 KB"},
    503: {
        "description": "Nothing was stored, send it again (Retry-After): the Tracking API is not enabled "
        "yet (the message names the key), or the store is busy or unreachable"
    },
}


def _route(kind: TrackingKind) -> None:
    async def track(request: Request, svc: Annotated[Services, Depends(services)]) -> JSONResponse:
        inbound = await read_request(request)
        receiver = svc.receiver()
        response = await run_in_threadpool(receiver.track_api, kind, inbound, now=svc.clock())
        return answer(svc, "segmentio", response)

    track.__name__ = f"segmentio_{kind}"
    track.__doc__ = f"A Segment Spec `{kind}` call, stored as records and contact events at once."
    router.add_api_route(
        f"/{kind}", track, methods=["POST"], summary=f"Segment.com {kind}", responses=_RESPONSES
    )


for _kind in TRACKING_KINDS:
    _route(_kind)
