"""An inbound HTTP request and its answer, independent of any web framework."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["InboundError", "InboundRequest", "InboundResponse"]


@dataclass(frozen=True)
class InboundRequest:
    """A request as received: the full URL the sender called, lower-case header names, the raw body."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class InboundResponse:
    """The status and JSON body to answer with, plus any extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class InboundError(Exception):
    """A request refused: its status, a short code and a message naming the cause and the fix."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> InboundResponse:
        """The JSON error answer: `{"error": code, "message": ...}`."""
        return InboundResponse(self.status, {"error": self.code, "message": self.message}, self.headers)
