"""In-memory fakes of the provider APIs, served through respx routers on an injected transport."""

from __future__ import annotations

import fnmatch
import json
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import respx

STRIPE_URL = "https://stripe.test"
HUBSPOT_URL = "https://hubspot.test"
TYPEFORM_URL = "https://typeform.test"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())


class FakeSleep:
    """Records every requested sleep and advances a fake monotonic clock by it."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.now = 1000.0

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class _Fake:
    """Shared plumbing: queued canned responses (errors) come before the fake's own answers."""

    token = ""

    def __init__(self) -> None:
        self.queued: deque[httpx.Response | Exception] = deque()
        self.requests: list[httpx.Request] = []

    def fail_next(self, *answers: httpx.Response | Exception) -> None:
        self.queued.extend(answers)

    def _canned(self, request: httpx.Request) -> httpx.Response | None:
        self.requests.append(request)
        if self.queued:
            answer = self.queued.popleft()
            if isinstance(answer, Exception):
                raise answer
            return answer
        if self.token.lower() not in request.headers.get("authorization", "").lower():
            return httpx.Response(401, json={"message": "bad token", "error": {"message": "Invalid API Key"}})
        return None

    def client(self, router: respx.MockRouter) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(router.handler), timeout=5)


class FakeStripe(_Fake):
    """Lists (newest first, `starting_after`, `created[...]`, products by `ids[]`) and `/v1/events`."""

    token = "Bearer sk_test_1"

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, list[dict[str, Any]]] = {
            "customers": [],
            "subscriptions": [],
            "invoices": [],
            "charges": [],
            "products": [],
        }
        self.events: list[dict[str, Any]] = []

    def add(self, stream: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[stream].append(obj)
        return obj

    def event(self, type_: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
        event = {
            "id": f"evt_{len(self.events):04d}",
            "object": "event",
            "type": type_,
            "created": created,
            "data": {"object": obj},
        }
        self.events.append(event)
        return event

    def handle(self, request: httpx.Request) -> httpx.Response:
        canned = self._canned(request)
        if canned is not None:
            return canned
        q = request.url.params
        kind = request.url.path.rsplit("/", 1)[-1]
        items = list(enumerate(self.events if kind == "events" else self.objects[kind]))
        for op in ("gt", "gte", "lt", "lte"):
            value = q.get(f"created[{op}]")
            if value is not None:
                bound = int(value)
                test = {"gt": bound.__lt__, "gte": bound.__le__, "lt": bound.__gt__, "lte": bound.__ge__}[op]
                items = [(i, o) for i, o in items if test(o["created"])]
        types = [v for k, v in q.multi_items() if k.startswith("types[")]
        if types:
            items = [(i, o) for i, o in items if o["type"] in types]
        if q.get("type"):
            items = [(i, o) for i, o in items if fnmatch.fnmatch(o["type"], q["type"])]
        ids = [v for k, v in q.multi_items() if k.startswith("ids[")]
        if ids:
            items = [(i, o) for i, o in items if o["id"] in ids]
        ordered = [o for _, o in sorted(items, key=lambda p: (p[1]["created"], p[0]), reverse=True)]
        if q.get("starting_after"):
            ids = [o["id"] for o in ordered]
            ordered = ordered[ids.index(q["starting_after"]) + 1 :]
        limit = int(q.get("limit", 10))
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": ordered[:limit],
                "has_more": len(ordered) > limit,
                "url": "/v1/x",
            },
        )

    def router(self) -> respx.MockRouter:
        router = respx.MockRouter(base_url=STRIPE_URL, assert_all_called=False)
        router.get(path__startswith="/v1/").mock(side_effect=self.handle)
        return router


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class FakeHubSpot(_Fake):
    """Search (ascending by last-modified, offset `after`, a result cap) and the properties API."""

    token = "Bearer pat-1"

    def __init__(self, cap: int = 10_000) -> None:
        super().__init__()
        self.cap = cap
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"contacts": {}, "companies": {}, "deals": {}}
        self.properties = {
            "contacts": [
                {"name": "email", "label": "Email", "type": "string", "fieldType": "text"},
                {"name": "firstname", "label": "First name", "type": "string", "fieldType": "text"},
                {
                    "name": "lastmodifieddate",
                    "label": "Last modified",
                    "type": "datetime",
                    "fieldType": "date",
                },
                {
                    "name": "plan",
                    "label": "Plan",
                    "type": "enumeration",
                    "fieldType": "select",
                    "options": [{"label": "Free", "value": "free"}, {"label": "Pro", "value": "pro"}],
                },
            ],
            "companies": [
                {"name": "name", "label": "Name", "type": "string", "fieldType": "text"},
                {"name": "hs_lastmodifieddate", "label": "Modified", "type": "datetime", "fieldType": "date"},
            ],
        }
        self.search_bodies: list[dict[str, Any]] = []

    def put(self, object_type: str, id_: str, modified_ms: int, **props: str) -> None:
        field = "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"
        self.objects[object_type][id_] = {
            "id": id_,
            "properties": {**props, field: iso_ms(modified_ms), "hs_object_id": id_},
            "createdAt": iso_ms(0),
            "updatedAt": iso_ms(modified_ms),
            "archived": False,
        }

    def search(self, request: httpx.Request, object_type: str) -> httpx.Response:
        canned = self._canned(request)
        if canned is not None:
            return canned
        body = json.loads(request.content)
        self.search_bodies.append(body)
        field_ = body["filterGroups"][0]["filters"][0]["propertyName"]
        since = int(body["filterGroups"][0]["filters"][0]["value"])

        def stamp(o: dict[str, Any]) -> int:
            moment = datetime.fromisoformat(o["properties"][field_])
            return int(moment.timestamp() * 1000)

        rows = sorted(
            (o for o in self.objects[object_type].values() if stamp(o) >= since),
            key=lambda o: (stamp(o), o["id"]),
        )
        offset, limit = int(body.get("after") or 0), body["limit"]
        if offset + limit > self.cap:
            return httpx.Response(400, json={"status": "error", "message": "too many results"})
        page = rows[offset : offset + limit]
        result: dict[str, Any] = {"total": len(rows), "results": page}
        if offset + limit < len(rows):
            result["paging"] = {"next": {"after": str(offset + limit)}}
        return httpx.Response(200, json=result)

    def props(self, request: httpx.Request, object_type: str) -> httpx.Response:
        canned = self._canned(request)
        return canned or httpx.Response(200, json={"results": self.properties.get(object_type, [])})

    def router(self) -> respx.MockRouter:
        router = respx.MockRouter(base_url=HUBSPOT_URL, assert_all_called=False)
        router.post(path__regex=r"/crm/v3/objects/(?P<object_type>\w+)/search").mock(side_effect=self.search)
        router.get(path__regex=r"/crm/v3/properties/(?P<object_type>\w+)").mock(side_effect=self.props)
        return router


def iso_s(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeTypeform(_Fake):
    """Responses newest first with inclusive `since` and exclusive `before` tokens; form definitions."""

    token = "bearer tfp_1"

    def __init__(self) -> None:
        super().__init__()
        self.responses: dict[str, list[dict[str, Any]]] = {}
        self.forms: dict[str, dict[str, Any]] = {}

    def submit(
        self,
        form_id: str,
        token: str,
        ts: int,
        *,
        email: str | None = None,
        hidden: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        answers: list[dict[str, Any]] = [
            {
                "field": {"id": "f1", "type": "multiple_choice", "ref": "plan"},
                "type": "choice",
                "choice": {"label": "Pro"},
            },
        ]
        if email:
            answers.append(
                {"field": {"id": "f2", "type": "email", "ref": "email"}, "type": "email", "email": email}
            )
        item = {
            "landing_id": token,
            "token": token,
            "landed_at": iso_s(ts - 60),
            "submitted_at": iso_s(ts),
            "metadata": {},
            "hidden": hidden or {},
            "answers": answers,
        }
        self.responses.setdefault(form_id, []).append(item)
        return item

    def list_responses(self, request: httpx.Request, form_id: str) -> httpx.Response:
        canned = self._canned(request)
        if canned is not None:
            return canned
        q = request.url.params
        items = list(enumerate(self.responses.get(form_id, [])))
        ordered = [o for _, o in sorted(items, key=lambda p: (p[1]["submitted_at"], p[0]), reverse=True)]
        if q.get("since"):
            ordered = [o for o in ordered if o["submitted_at"] >= q["since"]]
        if q.get("before"):
            tokens = [o["token"] for o in ordered]
            ordered = ordered[tokens.index(q["before"]) + 1 :]
        size = int(q.get("page_size", 25))
        return httpx.Response(
            200, json={"total_items": len(ordered), "page_count": 1, "items": ordered[:size]}
        )

    def get_form(self, request: httpx.Request, form_id: str) -> httpx.Response:
        canned = self._canned(request)
        if canned is not None:
            return canned
        if form_id not in self.forms:
            return httpx.Response(404, json={"code": "FORM_NOT_FOUND", "description": "Non existing form"})
        return httpx.Response(200, json=self.forms[form_id])

    def router(self) -> respx.MockRouter:
        router = respx.MockRouter(base_url=TYPEFORM_URL, assert_all_called=False)
        router.get(path__regex=r"/forms/(?P<form_id>\w+)/responses").mock(side_effect=self.list_responses)
        router.get(path__regex=r"/forms/(?P<form_id>\w+)$").mock(side_effect=self.get_form)
        return router


def resume_everywhere(
    pull: Callable[[str | None], list[Any]], cursor: str | None
) -> tuple[list[Any], list[list[Any]]]:
    """The uninterrupted pull, and for each k before the last: stopped after batch k, resumed from there."""
    whole = pull(cursor)
    resumed = []
    for k in range(len(whole) - 1):
        resumed.append(whole[: k + 1] + pull(whole[k].cursor))
    return whole, resumed


def keys(batches: list[Any]) -> list[tuple[str, str, datetime]]:
    """(stream, external id, time) of every record, in order."""
    return [(r.stream, r.external_id, r.updated_at) for b in batches for r in b.records]
