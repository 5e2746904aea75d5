"""Webhooks into crmhub: providers' (Stripe, HubSpot, Typeform, Segment.com) and senders' feedback."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from crmhub.server.inbound import answer, read_request
from crmhub.server.services import Services, services
from crmhub.wiring import evaluator
from sync.consent import ConsentError, Feedback, UnknownContactError, apply_feedback
from sync.inbound import AlreadyReceivedError, claim_events
from sync.store import write_transaction
from webhooks.exceptions import SecretError
from webhooks.inbound import PROVIDERS, InboundRequest, Provider
from webhooks.inbound.receiver import STORE_ERRORS, STORE_RETRY_SECONDS, store_unavailable
from webhooks.signing import SignatureError, load_keys, verify

__all__ = ["router"]

router = APIRouter(tags=["inbound webhooks"])

_SIGNED: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, forged or stale signature; nothing was stored"},
    404: {"description": "Not a provider crmhub knows"},
    413: {"description": "Body over the size limit; nothing was stored"},
    503: {
        "description": "Nothing was stored, send it again (Retry-After): the provider is not enabled yet "
        "(the message names the key), the store is busy or unreachable, or HubSpot could not be read"
    },
}


@router.post(
    "/hooks/{provider}",
    summary="A provider's webhook: verified on the raw body, then stored and evaluated at once",
    responses={400: {"description": "Malformed body; nothing was stored"}, **_SIGNED},
)
async def provider_hook(
    request: Request,
    provider: Annotated[str, Path(description=f"One of {', '.join(PROVIDERS)}")],
    svc: Annotated[Services, Depends(services)],
) -> JSONResponse:
    """Stripe (Stripe-Signature), HubSpot (X-HubSpot-Signature-v3), Typeform, Segment.com (X-Signature)."""
    inbound = await read_request(request)
    if provider not in PROVIDERS:
        return JSONResponse(
            {"error": "unknown_provider", "message": f"no provider {provider!r}: use {', '.join(PROVIDERS)}"},
            status_code=404,
        )
    receiver = svc.receiver()
    known: Provider = provider
    response = await run_in_threadpool(receiver.receive, known, inbound, now=svc.clock())
    return answer(svc, provider, response)


@router.post(
    "/hooks/feedback/{endpoint}",
    summary="A sender's feedback (unsubscribe, complaint, bounce, invalid number), signed like our webhooks",
    responses={
        401: {"description": "Signature does not verify with the endpoint's secret"},
        404: {"description": "Unknown endpoint or contact"},
        422: {"description": "Body is not a feedback message"},
        503: {"description": "The store is busy or unreachable (Retry-After), or a secret is unset"},
    },
)
async def feedback_hook(
    request: Request,
    endpoint: str,
    svc: Annotated[Services, Depends(services)],
) -> JSONResponse:
    """Standard Webhooks headers signed with the endpoint's secret; the change applies in one transaction."""
    response = await _feedback(await read_request(request), endpoint, svc)
    # Only configured endpoints get a series of their own: the path is the caller's to choose.
    known = endpoint in svc.settings.webhooks.endpoints
    svc.metrics.observe_ingest(
        f"feedback:{endpoint}" if known else "feedback:(unknown)", response.status_code
    )
    return response


async def _feedback(inbound: InboundRequest, endpoint: str, svc: Services) -> JSONResponse:
    config = svc.settings.webhooks.endpoints.get(endpoint)
    if config is None or not config.secret_envs:
        return _error(404, "unknown_endpoint", f"no webhook endpoint {endpoint!r} with secrets in [webhooks]")
    try:
        keys = load_keys(config.secret_envs, svc.environ, where=f"webhooks.endpoints.{endpoint}")
        verify(inbound.headers, inbound.body, keys, now=svc.clock().timestamp())
        feedback = Feedback.model_validate_json(inbound.body)
    except SecretError as exc:
        return _error(503, "secret_unset", str(exc))
    except SignatureError as exc:
        return _error(401, "invalid_signature", f"feedback for {endpoint}: {exc}")
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        return _error(422, "invalid_feedback", f"feedback for {endpoint}: {problems}")
    webhook_id = inbound.headers["webhook-id"]
    try:
        result = await run_in_threadpool(_apply, svc, feedback, endpoint, config.requires_consent, webhook_id)
    except AlreadyReceivedError:
        return JSONResponse({"applied": False, "duplicate": True})
    except UnknownContactError as exc:
        return _error(404, "unknown_contact", str(exc))
    except ConsentError as exc:
        return _error(422, "invalid_feedback", str(exc))
    except STORE_ERRORS as exc:
        # An unsubscribe must not be lost to a busy store: the sender retries what is not 2xx.
        answer = _error(503, "store_unavailable", store_unavailable(f"feedback for {endpoint}", exc))
        answer.headers["retry-after"] = str(STORE_RETRY_SECONDS)
        return answer
    svc.wake_worker()
    return JSONResponse({"applied": True, "duplicate": False, **result})


def _event_id(endpoint: str, webhook_id: str) -> str:
    """The inbound_events id of a feedback message: senders' webhook-ids are unique per endpoint only."""
    event_id = f"{endpoint}:{webhook_id}"
    # The column holds 255 characters; a longer id is kept as its digest, still one per message.
    return event_id if len(event_id) <= 255 else "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()


def _apply(
    svc: Services, feedback: Feedback, endpoint: str, channel: str | None, webhook_id: str
) -> dict[str, Any]:
    settings = svc.settings
    same_channel = [
        name
        for name, ep in settings.webhooks.endpoints.items()
        if channel is not None and ep.requires_consent == channel
    ]
    with write_transaction(svc.engine) as conn:
        # Claimed with the change it guards: a replay of an old opt-out must not undo a newer opt-in.
        claim_events(conn, "feedback", [_event_id(endpoint, webhook_id)], now=svc.clock())
        return apply_feedback(
            conn,
            feedback,
            endpoint=endpoint,
            channel=channel,
            now=svc.clock(),
            evaluate=evaluator(settings),
            endpoints=same_channel,
            config=settings.consent,
            region=settings.field_mapping.identity.default_region,
        )


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)
