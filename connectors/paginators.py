"""Paginators, one per provider style: `params()` for the next request, `update(page)` after it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from connectors.exceptions import MalformedPageError, PaginationLoopError

__all__ = [
    "HubSpotPaginator",
    "Paginator",
    "StripePaginator",
    "TypeformPaginator",
    "require_list",
]


def require_list(source: str, page: Any, key: str) -> list[Any]:
    """`page[key]` as a list, or a MalformedPageError naming the missing key."""
    if not isinstance(page, Mapping):
        raise MalformedPageError(
            f"{source}: malformed page: expected a JSON object, got {type(page).__name__}: "
            f"check connectors.{source}.base_url points at the API"
        )
    value = page.get(key)
    if not isinstance(value, list):
        raise MalformedPageError(
            f"{source}: malformed page: '{key}' is missing or not a list: "
            f"check connectors.{source}.base_url points at the API"
        )
    return value


class Paginator(ABC):
    """Holds the current page token; two identical tokens in a row raise PaginationLoopError."""

    source = ""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.finished = False

    def _advance(self, token: str | None) -> None:
        if token is None:
            self.finished = True
            return
        if token == self.token:
            raise PaginationLoopError(
                f"{self.source}: pagination loop: the provider returned token {token!r} twice in a row: "
                "report it to the provider; the cursor was not advanced past the last good page"
            )
        self.token = token

    @abstractmethod
    def params(self) -> dict[str, str]:
        """Query parameters that ask for the page after the current token."""

    @abstractmethod
    def update(self, page: Mapping[str, Any]) -> None:
        """Read the next token from a page, or mark the paginator finished."""


class StripePaginator(Paginator):
    """Stripe lists: `starting_after=<last id>` while `has_more` is true."""

    source = "stripe"

    def params(self) -> dict[str, str]:
        return {"starting_after": self.token} if self.token else {}

    def update(self, page: Mapping[str, Any]) -> None:
        data = require_list(self.source, page, "data")
        if not page.get("has_more") or not data:
            self._advance(None)
            return
        last = data[-1]
        if not isinstance(last, Mapping) or not isinstance(last.get("id"), str):
            raise MalformedPageError(
                "stripe: malformed page: an object has no 'id': check connectors.stripe.base_url"
            )
        self._advance(last["id"])


class HubSpotPaginator(Paginator):
    """HubSpot: `after=<paging.next.after>` until `paging` is absent."""

    source = "hubspot"

    def params(self) -> dict[str, str]:
        return {"after": self.token} if self.token else {}

    def update(self, page: Mapping[str, Any]) -> None:
        require_list(self.source, page, "results")
        paging = page.get("paging") or {}
        after = (paging.get("next") or {}).get("after") if isinstance(paging, Mapping) else None
        self._advance(str(after) if after not in (None, "") else None)


class TypeformPaginator(Paginator):
    """Typeform responses, newest first: `before=<token of the last item>` until a short page."""

    source = "typeform"

    def __init__(self, page_size: int, token: str | None = None) -> None:
        super().__init__(token)
        self.page_size = page_size

    def params(self) -> dict[str, str]:
        return {"before": self.token} if self.token else {}

    def update(self, page: Mapping[str, Any]) -> None:
        items = require_list(self.source, page, "items")
        # A short page is the last one; it saves the request that would return nothing.
        if len(items) < self.page_size or not items:
            self._advance(None)
            return
        last = items[-1]
        if not isinstance(last, Mapping) or not isinstance(last.get("token"), str):
            raise MalformedPageError(
                "typeform: malformed page: a response has no 'token': check connectors.typeform.base_url"
            )
        self._advance(last["token"])
