"""The Typeform look-alike: `/forms`, `/forms/{id}` and `/forms/{id}/responses` with token paging.

Responses are listed newest first. `before=<token>` gives the responses older than that one (the
next page backwards); `after=<token>` gives the ones newer than it, oldest first, so that the last
item's token is again the cursor. Both are exclusive and refuse a `sort`; `since`/`until` are
inclusive and take epoch seconds or ISO-8601.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from crmhub.sandbox import credentials
from crmhub.sandbox.asgi import Request, Response, Router, json_response
from crmhub.sandbox.typeform_store import Response as StoredResponse
from crmhub.sandbox.world import World


class TypeformError(Exception):
    """An error Typeform answers with `{"code", "description"}`."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description

    def response(self) -> Response:
        """The error as Typeform's JSON body."""
        return json_response(self.status, {"code": self.code, "description": self.description})


def _authenticate(request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or token.strip() != credentials.TYPEFORM_TOKEN:
        raise TypeformError(
            403 if token else 401, "AUTHENTICATION_FAILED", "Authentication credentials not valid"
        )


def _moment(value: str, name: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TypeformError(400, "VALIDATION_ERROR", f"{name} must be epoch seconds or ISO-8601") from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp())


def _when(response: StoredResponse) -> int:
    return response.submitted_at if response.submitted_at is not None else response.landed_at


class TypeformApi:
    """Handlers bound to one `World`."""

    def __init__(self, world: World) -> None:
        self.world = world

    def register(self, router: Router) -> None:
        """Add every Typeform route to `router`."""
        router.add("GET", "/forms", self._guard(self.list_forms))
        router.add("GET", "/forms/{formId}", self._guard(self.get_form))
        router.add("GET", "/forms/{formId}/responses", self._guard(self.list_responses))

    def _guard(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            try:
                _authenticate(request)
                return handler(request)
            except TypeformError as error:
                return error.response()

        return handle

    def _form(self, request: Request) -> dict[str, Any]:
        form_id = request.path_params["formId"]
        form = self.world.typeform.forms.get(form_id)
        if form is None:
            raise TypeformError(404, "FORM_NOT_FOUND", f"Non existing form with uid {form_id}")
        return form

    def list_forms(self, request: Request) -> Response:
        """`GET /forms`: a summary of every form."""
        items = [
            {
                "id": f["id"],
                "title": f["title"],
                "created_at": f["created_at"],
                "last_updated_at": f["last_updated_at"],
                "settings": {"is_public": True},
                "self": {"href": f"{request.root_url}/forms/{f['id']}"},
                "theme": f["theme"],
                "_links": f["_links"],
            }
            for f in self.world.typeform.forms.values()
        ]
        return json_response(200, {"total_items": len(items), "page_count": 1, "items": items})

    def get_form(self, request: Request) -> Response:
        """`GET /forms/{id}`: fields with ids, refs, types and choices, and the hidden fields."""
        return json_response(200, self._form(request))

    def list_responses(self, request: Request) -> Response:
        """`GET /forms/{id}/responses`."""
        form = self._form(request)
        raw_size = request.arg("page_size", "25") or "25"
        if not raw_size.isdigit() or not 1 <= int(raw_size) <= 1000:
            raise TypeformError(400, "VALIDATION_ERROR", "page_size must be between 1 and 1000")
        page_size = int(raw_size)
        since, until = request.arg("since"), request.arg("until")
        low = _moment(since, "since") if since else None
        high = _moment(until, "until") if until else None
        before, after, sort = request.arg("before"), request.arg("after"), request.arg("sort")
        if sort and (before or after):
            raise TypeformError(400, "VALIDATION_ERROR", "before and after cannot be combined with sort")
        completed = request.arg("completed")
        wanted_ids = set(filter(None, (request.arg("included_response_ids") or "").split(",")))
        stored = self.world.typeform.responses[form["id"]]
        rows = [
            r
            for r in stored
            if (completed == "false") == (r.submitted_at is None)
            and (low is None or _when(r) >= low)
            and (high is None or _when(r) <= high)
            and (not wanted_ids or r.token in wanted_ids)
        ]
        ascending = sort is not None and sort.replace(" ", "").lower().endswith(",asc")
        for token, older in ((before, True), (after, False)):
            if token:
                pivot = next((r for r in stored if r.token == token), None)
                if pivot is None:
                    raise TypeformError(400, "VALIDATION_ERROR", f"unknown response token {token}")
                key = (_when(pivot), pivot.token)
                rows = [r for r in rows if ((_when(r), r.token) < key) == older and r.token != token]
        if after:
            ascending = True
        if not ascending:
            rows = rows[::-1]
        items = [r.body for r in rows[:page_size]]
        body = {"total_items": len(rows), "page_count": math.ceil(len(rows) / page_size), "items": items}
        return json_response(200, body)
