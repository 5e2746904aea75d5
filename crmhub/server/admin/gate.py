"""The admin token checked in front of FastAPI, before any request body is read."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from crmhub.server.admin._common import admin_refusal
from crmhub.server.services import Services

__all__ = ["AdminGate"]


class AdminGate:
    """ASGI middleware refusing `/admin` requests without the token, answered before the body is read.

    FastAPI reads and parses a route's body before its dependencies run, so `require_admin` alone
    let anyone make the server read a body (up to the router's limit) before the 401.
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401 / 503 at once for an admin path without the token; pass anything else on."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/admin" or path.startswith("/admin/"):
            scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
            refusal = admin_refusal(self.services, token.strip() if scheme.lower() == "bearer" else "")
            if refusal is not None:
                response = JSONResponse(
                    {"detail": refusal.detail}, status_code=refusal.status_code, headers=refusal.headers
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
