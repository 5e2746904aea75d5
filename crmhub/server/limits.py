"""A deadline for receiving a request body, so a client that never sends it cannot hold a socket."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyDeadline", "RequestTimeoutError"]


class RequestTimeoutError(HTTPException):
    """The request body did not arrive in time; FastAPI and Starlette answer it as a 408."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body not received within {seconds:g} s: send it at once")


class BodyDeadline:
    """ASGI middleware: `receive()` fails with RequestTimeoutError once `seconds` have passed.

    The deadline runs from the start of the request to the body's last chunk; later receives (a
    response listening for the client going away) wait as long as they need.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with a receive that keeps to the deadline."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeoutError(self.seconds) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)
