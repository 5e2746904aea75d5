"""The HubSpot SDK on our httpx client, throttled by token buckets, with our retries and errors."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from hubspot import HubSpot
from hubspot.crm.properties import (
    BatchInputPropertyCreate,
    OptionInput,
    PropertyCreate,
    PropertyGroupCreate,
    PropertyUpdate,
)

from connectors.exceptions import MalformedPageError, PermanentError
from connectors.http import Retrier, error_for_status, error_for_transport, parse_retry_after
from connectors.hubspot.transport import HttpxPoolManager, httpx_api_factory
from connectors.ratelimit import TokenBucket

__all__ = ["HubSpotApi", "PropertyDefinition"]


@dataclass(frozen=True, slots=True)
class PropertyDefinition:
    """A HubSpot property as declared by the properties API: its name and its declared type."""

    name: str
    label: str
    type: str
    field_type: str
    options: tuple[str, ...] = ()


class HubSpotApi:
    """Search and properties calls through `hubspot.HubSpot`, returning plain JSON objects."""

    def __init__(
        self,
        access_token: str,
        base_url: str,
        http: httpx.Client,
        retrier: Retrier,
        *,
        overall: TokenBucket,
        search: TokenBucket,
    ) -> None:
        self.retrier = retrier
        # Public, so callers can see which buckets (shared per portal, see limits.py) they draw from.
        self.overall_bucket = overall
        self.search_bucket = search
        pool = HttpxPoolManager(http, before_request=self._throttle)
        # The pool replaces urllib3 entirely, so the SDK's urllib3 retries never run; retries are ours.
        self._client = HubSpot(
            access_token=access_token, host=base_url.rstrip("/"), api_factory=httpx_api_factory(pool)
        )
        # Each SDK attribute access builds a new API object and client, so they are built once here.
        self._search_apis: dict[str, tuple[Any, Any]] = {}
        self._properties_api: Any = None

    def _throttle(self, method: str, url: str) -> None:
        self.overall_bucket.acquire()
        if url.split("?", 1)[0].endswith("/search"):
            self.search_bucket.acquire()

    def search(self, object_type: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """One page of `POST /crm/v3/objects/{object_type}/search`."""
        if object_type not in self._search_apis:
            models = importlib.import_module(f"hubspot.crm.{object_type}")
            self._search_apis[object_type] = (models, getattr(self._client.crm, object_type).search_api)
        models, api = self._search_apis[object_type]
        request = models.PublicObjectSearchRequest(
            filter_groups=[
                models.FilterGroup(filters=[models.Filter(**f) for f in body["filters"]]),
            ],
            sorts=body["sorts"],
            properties=body["properties"],
            limit=body["limit"],
            after=body.get("after"),
        )
        what = f"{object_type} search"
        return self._call(
            what, lambda: api.do_search(public_object_search_request=request, _preload_content=False)
        )

    def properties(self, object_type: str) -> list[PropertyDefinition]:
        """Every property of an object type, with its declared type."""
        if self._properties_api is None:
            self._properties_api = self._client.crm.properties.core_api
        api = self._properties_api
        page = self._call(
            f"{object_type} properties",
            lambda: api.get_all(object_type=object_type, archived=False, _preload_content=False),
        )
        results = page.get("results")
        if not isinstance(results, list):
            raise MalformedPageError(
                f"hubspot: {object_type} properties: malformed page: 'results' is missing: "
                "check connectors.hubspot.base_url points at the HubSpot API"
            )
        return [
            PropertyDefinition(
                name=str(p["name"]),
                label=str(p.get("label") or p["name"]),
                type=str(p.get("type") or "string"),
                field_type=str(p.get("fieldType") or ""),
                options=tuple(str(o.get("value")) for o in p.get("options") or [] if isinstance(o, Mapping)),
            )
            for p in results
            if isinstance(p, Mapping) and p.get("name")
        ]

    def create_property_group(self, object_type: str, body: Mapping[str, Any]) -> bool:
        """Create a property group; False when it already exists (HubSpot answers 409)."""
        api = self._client.crm.properties.groups_api
        group = PropertyGroupCreate(
            name=body["name"], label=body["label"], display_order=body.get("displayOrder")
        )
        return self._create(
            f"{object_type} property group {body['name']}",
            lambda: api.create(object_type=object_type, property_group_create=group, _preload_content=False),
        )

    def create_property(self, object_type: str, body: Mapping[str, Any]) -> bool:
        """Create a property; False when one of that name already exists (HubSpot answers 409)."""
        api = self._client.crm.properties.core_api
        prop = _property_create(body)
        return self._create(
            f"{object_type} property {body['name']}",
            lambda: api.create(object_type=object_type, property_create=prop, _preload_content=False),
        )

    def update_property(self, object_type: str, name: str, body: Mapping[str, Any]) -> None:
        """`PATCH /crm/v3/properties/{object_type}/{name}`: a property's new type, fieldType or label."""
        api = self._client.crm.properties.core_api
        change = PropertyUpdate(
            type=body.get("type"),
            field_type=body.get("fieldType"),
            label=body.get("label"),
            options=_options(body) or None,
        )
        self._call(
            f"{object_type} property {name}",
            lambda: api.update(
                object_type=object_type, property_name=name, property_update=change, _preload_content=False
            ),
        )

    def create_properties(self, object_type: str, bodies: Sequence[Mapping[str, Any]]) -> list[str]:
        """Create up to 100 properties in one call; returns the names created, not those that existed.

        HubSpot's answer to a batch holding a taken name is not pinned down (a 207 listing the
        refused, or the whole batch refused), so whatever the batch did not create is created one
        at a time, where 409 means it exists and any other refusal names the property.
        """
        api = self._client.crm.properties.batch_api
        batch = BatchInputPropertyCreate(inputs=[_property_create(body) for body in bodies])
        answer = self._call(
            f"{object_type} properties batch create",
            lambda: _refused_as_empty(
                lambda: api.create(
                    object_type=object_type, batch_input_property_create=batch, _preload_content=False
                ),
                (400, 409),
            ),
        )
        results = answer.get("results")
        created = (
            {str(r.get("name")) for r in results if isinstance(r, Mapping)}
            if isinstance(results, list)
            else set()
        )
        for body in bodies:
            if body["name"] not in created and self.create_property(object_type, body):
                created.add(body["name"])
        return [body["name"] for body in bodies if body["name"] in created]

    def batch_update(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        """`POST /crm/v3/objects/{object_type}/batch/update` of <= 100 objects known by id: HubSpot's answer.

        200, or 207 with the inputs it did not write in `errors`. A 400 (HubSpot refuses the whole
        batch for one unknown id or refused value) is answered with HubSpot's error body, marked
        `"status": "error"`, for the caller to find the bad inputs; other failures raise as usual.
        """
        models = importlib.import_module(f"hubspot.crm.{object_type}")
        api = getattr(self._client.crm, object_type).batch_api
        batch = models.BatchInputSimplePublicObjectBatchInput(
            inputs=[
                models.SimplePublicObjectBatchInput(id=i["id"], properties=i["properties"]) for i in inputs
            ]
        )
        # The generic 403 fix asks for read access; a write needs the write scope.
        fixes = {
            403: f"give the private app token in connectors.hubspot.api_key_env the "
            f"crm.objects.{object_type}.write scope"
        }
        return self._call(
            f"{object_type} batch update",
            lambda: _refusal_as_answer(
                lambda: api.update(batch_input_simple_public_object_batch_input=batch, _preload_content=False)
            ),
            fixes=fixes,
        )

    def batch_read(
        self, object_type: str, ids: Sequence[str], properties: Sequence[str]
    ) -> Mapping[str, Any]:
        """`POST /crm/v3/objects/{object_type}/batch/read` by id, <= 100; ids not found are left out."""
        models = importlib.import_module(f"hubspot.crm.{object_type}")
        api = getattr(self._client.crm, object_type).batch_api
        body = models.BatchReadInputSimplePublicObjectId(
            inputs=[models.SimplePublicObjectId(id=i) for i in ids],
            properties=list(properties),
            properties_with_history=[],
        )
        return self._call(
            f"{object_type} batch read",
            lambda: api.read(batch_read_input_simple_public_object_id=body, _preload_content=False),
        )

    def _create(self, what: str, fn: Callable[[], Any]) -> bool:
        # Creating what exists is done, not failed: HubSpot says 409, answered here as `{}`, while
        # a create answers with the object it made.
        return bool(self._call(what, lambda: _refused_as_empty(fn, (409,))))

    def _call(
        self, what: str, fn: Callable[[], Any], *, fixes: Mapping[int, str] | None = None
    ) -> Mapping[str, Any]:
        return self.retrier.call(lambda: self._once(what, fn, fixes or {}))

    def _once(self, what: str, fn: Callable[[], Any], fixes: Mapping[int, str]) -> Mapping[str, Any]:
        try:
            response = fn()
        except httpx.TransportError as exc:
            raise error_for_transport("hubspot", exc, what=what) from exc
        except Exception as exc:
            status = getattr(exc, "status", None)
            if not isinstance(status, int) or status == 0:
                raise error_for_transport("hubspot", exc, what=what) from exc
            headers = getattr(exc, "headers", None) or {}
            detail = _message(getattr(exc, "body", None))
            if status in fixes:
                extra = f" ({detail})" if detail else ""
                raise PermanentError(f"hubspot: {what}: refused ({status}){extra}: {fixes[status]}") from exc
            raise error_for_status(
                "hubspot",
                status,
                what=what,
                retry_after=parse_retry_after(headers.get("retry-after")),
                detail=detail,
            ) from exc
        try:
            data = json.loads(response.data)
        except ValueError:
            data = None
        if not isinstance(data, Mapping):
            raise MalformedPageError(
                f"hubspot: {what}: malformed page: the body is not a JSON object: "
                "check connectors.hubspot.base_url points at the HubSpot API"
            )
        return data


class _EmptyResponse:
    """Stands in for the SDK's response when HubSpot refused a create (409: it exists)."""

    data = b"{}"


def _refused_as_empty(fn: Callable[[], Any], statuses: tuple[int, ...]) -> Any:
    """`fn()`, with HubSpot refusing the request with one of `statuses` answered as an empty response."""
    try:
        return fn()
    except Exception as exc:
        if getattr(exc, "status", None) not in statuses:
            raise
        return _EmptyResponse()


class _RefusalResponse:
    """Stands in for the SDK's response when HubSpot refused a batch whole (400): its error body."""

    def __init__(self, body: Any) -> None:
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, Mapping):
            parsed = {"message": text[:500]}
        self.data = json.dumps({**parsed, "status": "error"}).encode()


def _refusal_as_answer(fn: Callable[[], Any]) -> Any:
    """`fn()`, with HubSpot refusing the request with 400 answered by its error body."""
    try:
        return fn()
    except Exception as exc:
        if getattr(exc, "status", None) != 400:
            raise
        return _RefusalResponse(getattr(exc, "body", None))


def _property_create(body: Mapping[str, Any]) -> PropertyCreate:
    """The SDK's model of a property create body (field_mapping.hubspot_properties.property_create)."""
    options = _options(body)
    return PropertyCreate(
        name=body["name"],
        label=body["label"],
        type=body["type"],
        field_type=body["fieldType"],
        group_name=body["groupName"],
        description=body.get("description"),
        form_field=body.get("formField", False),
        options=options or None,
    )


def _options(body: Mapping[str, Any]) -> list[OptionInput]:
    """The SDK's models of a property body's options (a boolean's Yes and No)."""
    return [
        OptionInput(label=o["label"], value=o["value"], display_order=o["displayOrder"], hidden=o["hidden"])
        for o in body.get("options") or []
    ]


def _message(body: Any) -> str:
    """HubSpot's own error message from an error body, shortened; empty when there is none."""
    try:
        parsed = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        return ""
    message = parsed.get("message") if isinstance(parsed, Mapping) else None
    return str(message)[:200] if message else ""
