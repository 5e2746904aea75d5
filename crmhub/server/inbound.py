"""Between FastAPI and the framework-free inbound receiver: the raw request in, its answer out."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from crmhub.server.services import Services
from webhooks.inbound import InboundRequest, InboundResponse

__all__ = ["BODY_LIMIT_BYTES", "BodyTooLargeError", "answer", "read_request", "too_large"]

# No inbound body is read past this, whatever the per-provider limits say: a client streaming
# gigabytes must not fill the server's memory before the receiver can refuse it.
BODY_LIMIT_BYTES = 8 * 1024 * 1024


class BodyTooLargeError(Exception):
    """A request body over BODY_LIMIT_BYTES."""


async def read_request(request: Request) -> InboundRequest:
    """The method, the URL as called, lower-case headers and the raw body, read up to the hard limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > BODY_LIMIT_BYTES:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT_BYTES:
            raise BodyTooLargeError
        chunks.append(chunk)
    headers = {name.lower(): value for name, value in request.headers.items()}
    return InboundRequest(request.method, str(request.url), headers, b"".join(chunks))


def too_large() -> JSONResponse:
    """The 413 answer for a body over the hard limit."""
    message = f"request body over {BODY_LIMIT_BYTES} bytes: send smaller batches"
    return JSONResponse({"error": "payload_too_large", "message": message}, status_code=413)


def answer(svc: Services, source: str, response: InboundResponse) -> JSONResponse:
    """The receiver's answer as a response; counted, and the worker woken when something was stored."""
    stored = response.body.get("records")
    svc.metrics.observe_ingest(source, response.status, stored if isinstance(stored, int) else 0)
    if response.status < 300:
        svc.wake_worker()
    return JSONResponse(response.body, status_code=response.status, headers=response.headers)
