"""The HubSpot look-alike: CRM objects (list, search, batch read/upsert) and properties with their groups."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from crmhub.sandbox import credentials
from crmhub.sandbox.asgi import Request, Response, Router, json_response
from crmhub.sandbox.hubspot_store import (
    OBJECT_TYPES,
    SEARCH_RESULT_CAP,
    VALID_FIELD_TYPES,
    CrmObject,
    iso_ms,
    parse_time_ms,
)
from crmhub.sandbox.world import World

_DATE_PROPERTIES = frozenset({"createdate", "lastmodifieddate", "hs_lastmodifieddate", "closedate"})
_BATCH_LIMIT = 100
_correlation = itertools.count(1)


class HubSpotError(Exception):
    """An error HubSpot answers with `{"status": "error", "message", "correlationId", "category"}`."""

    def __init__(self, status: int, message: str, category: str) -> None:
        super().__init__(message)
        self.status, self.message, self.category = status, message, category

    def response(self) -> Response:
        """The error as HubSpot's JSON body."""
        correlation = f"00000000-0000-4000-8000-{next(_correlation):012d}"
        body = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation,
            "category": self.category,
        }
        return json_response(self.status, body)


def _authenticate(request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or token.strip() != credentials.HUBSPOT_ACCESS_TOKEN:
        raise HubSpotError(
            401,
            "Authentication credentials not found. This API supports OAuth 2.0 and private app tokens.",
            "INVALID_AUTHENTICATION",
        )


def _object_type(request: Request) -> str:
    object_type = request.path_params["objectType"]
    if object_type not in OBJECT_TYPES:
        raise HubSpotError(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR")
    return object_type


def _int(value: Any, name: str, default: int, maximum: int) -> int:
    try:
        number = default if value is None else int(value)
    except (TypeError, ValueError):
        raise HubSpotError(400, f"Invalid input for {name}: {value!r}", "VALIDATION_ERROR") from None
    if not 1 <= number <= maximum:
        raise HubSpotError(400, f"{name} must be between 1 and {maximum}, got {number}", "VALIDATION_ERROR")
    return number


def _comparable(prop: str, value: str | None) -> Any:
    if value is None:
        return None
    if prop in _DATE_PROPERTIES:
        return parse_time_ms(value)
    try:
        return float(value)
    except ValueError:
        return value.strip().casefold()


def _matches(obj: CrmObject, flt: dict[str, Any]) -> bool:
    prop, operator = flt.get("propertyName", ""), flt.get("operator", "EQ")
    have = _comparable(prop, obj.properties.get(prop))
    if operator == "HAS_PROPERTY":
        return have is not None
    if operator == "NOT_HAS_PROPERTY":
        return have is None
    if operator in ("IN", "NOT_IN"):
        values = {_comparable(prop, str(v)) for v in flt.get("values", [])}
        return bool((have in values) == (operator == "IN"))
    want = _comparable(prop, None if flt.get("value") is None else str(flt["value"]))
    if operator == "NEQ":
        return bool(have != want)
    if have is None or want is None or type(have) is not type(want):
        return False
    if operator == "EQ":
        return bool(have == want)
    if operator == "CONTAINS_TOKEN":
        return str(want).strip("*") in str(have)
    if operator == "BETWEEN":
        high = _comparable(prop, str(flt.get("highValue")))
        return high is not None and bool(want <= have <= high)
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "GT": lambda a, b: a > b,
        "GTE": lambda a, b: a >= b,
        "LT": lambda a, b: a < b,
        "LTE": lambda a, b: a <= b,
    }
    if operator not in compare:
        raise HubSpotError(400, f"Unknown filter operator {operator}", "VALIDATION_ERROR")
    return compare[operator](have, want)


def _properties_arg(request: Request) -> list[str]:
    names: list[str] = []
    for value in request.args("properties"):
        names.extend(n for n in value.split(",") if n)
    return names


class HubSpotApi:
    """Handlers bound to one `World`."""

    def __init__(self, world: World) -> None:
        self.world = world

    def register(self, router: Router) -> None:
        """Add every HubSpot route to `router`."""
        routes: list[tuple[str, str, Callable[[Request], Response]]] = [
            ("GET", "/crm/v3/objects/{objectType}", self.list_objects),
            ("POST", "/crm/v3/objects/{objectType}/search", self.search),
            ("POST", "/crm/v3/objects/{objectType}/batch/read", self.batch_read),
            ("POST", "/crm/v3/objects/{objectType}/batch/upsert", self.batch_upsert),
            ("POST", "/crm/v3/objects/{objectType}/batch/update", self.batch_update),
            ("GET", "/crm/v3/objects/{objectType}/{objectId}", self.get_object),
            ("GET", "/crm/v3/properties/{objectType}/groups", self.list_groups),
            ("POST", "/crm/v3/properties/{objectType}/groups", self.create_group),
            ("GET", "/crm/v3/properties/{objectType}/groups/{name}", self.get_group),
            ("GET", "/crm/v3/properties/{objectType}", self.list_properties),
            ("POST", "/crm/v3/properties/{objectType}", self.create_property),
            ("POST", "/crm/v3/properties/{objectType}/batch/create", self.batch_create_properties),
            ("GET", "/crm/v3/properties/{objectType}/{name}", self.get_property),
            ("PATCH", "/crm/v3/properties/{objectType}/{name}", self.update_property),
        ]
        for method, path, handler in routes:
            router.add(method, path, self._guard(handler))

    def _guard(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            try:
                _authenticate(request)
                return handler(request)
            except HubSpotError as error:
                return error.response()
            except (ValueError, TypeError, AttributeError, KeyError):
                return HubSpotError(400, "Invalid input JSON on line 1", "VALIDATION_ERROR").response()

        return handle

    # -- objects ------------------------------------------------------------------------------------

    def list_objects(self, request: Request) -> Response:
        """`GET /crm/v3/objects/{type}`: pages of records ordered by id, `after` is the next id."""
        object_type = _object_type(request)
        limit = _int(request.arg("limit"), "limit", 10, 100)
        after = int(request.arg("after") or 0)
        archived = (request.arg("archived") or "false").lower() == "true"
        names = _properties_arg(request)
        rows = [
            o
            for o in self.world.hubspot.objects[object_type].values()
            if o.id >= after and o.archived == archived
        ]
        page = rows[:limit]
        body: dict[str, Any] = {"results": [o.to_json(object_type, names) for o in page]}
        if len(rows) > limit:
            next_after = str(rows[limit].id)
            link = f"{request.root_url}{request.path}?after={next_after}"
            body["paging"] = {"next": {"after": next_after, "link": link}}
        return json_response(200, body)

    def get_object(self, request: Request) -> Response:
        """`GET /crm/v3/objects/{type}/{id}` (or `?idProperty=email`)."""
        object_type = _object_type(request)
        id_property = request.arg("idProperty")
        key = request.path_params["objectId"]
        found = self._lookup(object_type, key, id_property)
        if found is None:
            return Response(404, b"")
        return json_response(200, found.to_json(object_type, _properties_arg(request)))

    def _lookup(self, object_type: str, key: str, id_property: str | None) -> CrmObject | None:
        if id_property and id_property != "hs_object_id":
            return self.world.hubspot.find_by(object_type, id_property, key)
        try:
            return self.world.hubspot.objects[object_type].get(int(key))
        except ValueError:
            return None

    def search(self, request: Request) -> Response:
        """`POST .../search`: filter groups (OR of ANDs), sorts, and the 10,000-result cap."""
        object_type = _object_type(request)
        body = request.json() or {}
        limit = _int(body.get("limit"), "limit", 10, 200)
        after = int(body.get("after") or 0)
        if after + limit > SEARCH_RESULT_CAP:
            raise HubSpotError(
                400,
                f"There was a problem with the request. The search can return at most {SEARCH_RESULT_CAP} "
                "results; narrow the query (e.g. filter on lastmodifieddate) instead of paging further.",
                "VALIDATION_ERROR",
            )
        groups = body.get("filterGroups") or []
        if len(groups) > 5 or sum(len(g.get("filters", [])) for g in groups) > 25:
            raise HubSpotError(
                400, "Too many filter groups or filters (at most 5 groups, 25 filters).", "VALIDATION_ERROR"
            )
        rows = [
            o
            for o in self.world.hubspot.objects[object_type].values()
            if not groups or any(all(_matches(o, f) for f in g.get("filters", [])) for g in groups)
        ]
        query = (body.get("query") or "").casefold()
        if query:
            rows = [o for o in rows if any(query in (v or "").casefold() for v in o.properties.values())]
        for sort in reversed(body.get("sorts") or []):
            name = sort if isinstance(sort, str) else sort.get("propertyName", "hs_object_id")
            descending = isinstance(sort, dict) and sort.get("direction") == "DESCENDING"
            rows.sort(key=functools.partial(_sort_key, name=name), reverse=descending)
        page = rows[after : after + limit]
        result: dict[str, Any] = {
            "total": len(rows),
            "results": [o.to_json(object_type, body.get("properties") or []) for o in page],
        }
        if after + limit < len(rows):
            result["paging"] = {"next": {"after": str(after + limit)}}
        return json_response(200, result)

    def batch_read(self, request: Request) -> Response:
        """`POST .../batch/read` by id or by a unique `idProperty` such as `email`."""
        object_type = _object_type(request)
        body = request.json()
        inputs = body.get("inputs") or []
        if len(inputs) > _BATCH_LIMIT:
            raise HubSpotError(
                400, f"Batch size {len(inputs)} exceeds the limit of {_BATCH_LIMIT}", "VALIDATION_ERROR"
            )
        found, missing = [], []
        for item in inputs:
            obj = self._lookup(object_type, str(item["id"]), body.get("idProperty"))
            (
                found.append(obj.to_json(object_type, body.get("properties") or []))
                if obj
                else missing.append(str(item["id"]))
            )
        return self._batch_result(found, missing, object_type)

    def batch_upsert(self, request: Request) -> Response:
        """`POST .../batch/upsert`: create or update by `idProperty` (`email`); unknown properties: 400."""
        object_type = _object_type(request)
        inputs = self._batch_inputs(request, object_type)
        now_ms = self.world.now * 1000
        results = []
        for item in inputs:
            id_property = item.get("idProperty") or "hs_object_id"
            props = {k: None if v is None else str(v) for k, v in (item.get("properties") or {}).items()}
            obj = self._lookup(object_type, str(item["id"]), id_property)
            created = obj is None
            if obj is None:
                if id_property != "hs_object_id":
                    props.setdefault(id_property, str(item["id"]))
                obj = self.world.hubspot.new_object(object_type, props, self.world.hubspot.write_time(now_ms))
            else:
                self.world.hubspot.update(object_type, obj, props, self.world.hubspot.write_time(now_ms))
            results.append(obj.to_json(object_type, list(props)) | {"new": created})
        return self._batch_result(results, [], object_type)

    def batch_update(self, request: Request) -> Response:
        """`POST .../batch/update`: set properties of objects known by id; any unknown id or property: 400."""
        object_type = _object_type(request)
        inputs = self._batch_inputs(request, object_type)
        found = [(self._lookup(object_type, str(item["id"]), None), item) for item in inputs]
        missing = [str(item["id"]) for obj, item in found if obj is None]
        if missing:
            raise HubSpotError(
                400, f"Could not get some {object_type} objects: {', '.join(missing)}", "VALIDATION_ERROR"
            )
        now_ms = self.world.now * 1000
        results = []
        for obj, item in found:
            assert obj is not None
            props = {k: None if v is None else str(v) for k, v in (item.get("properties") or {}).items()}
            self.world.hubspot.update(object_type, obj, props, self.world.hubspot.write_time(now_ms))
            results.append(obj.to_json(object_type, list(props)))
        return self._batch_result(results, [], object_type)

    def _batch_inputs(self, request: Request, object_type: str) -> list[dict[str, Any]]:
        """The inputs of a batch write, refused whole if too many or naming an unknown property."""
        inputs: list[dict[str, Any]] = request.json().get("inputs") or []
        if len(inputs) > _BATCH_LIMIT:
            raise HubSpotError(
                400, f"Batch size {len(inputs)} exceeds the limit of {_BATCH_LIMIT}", "VALIDATION_ERROR"
            )
        known = self.world.hubspot.properties[object_type]
        for item in inputs:
            unknown = sorted(set(item.get("properties") or {}) - set(known))
            if unknown:
                raise HubSpotError(
                    400,
                    f'Property values were not valid: Property "{unknown[0]}" does not exist',
                    "VALIDATION_ERROR",
                )
            for name, value in (item.get("properties") or {}).items():
                if not _fits(known[name]["type"], value):
                    raise HubSpotError(
                        400,
                        f"Property values were not valid: {value!r} is not a valid {known[name]['type']} "
                        f'for property "{name}"',
                        "VALIDATION_ERROR",
                    )
        return inputs

    def _batch_result(self, results: list[dict[str, Any]], missing: list[str], object_type: str) -> Response:
        stamp = iso_ms(self.world.now * 1000)
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": stamp,
            "completedAt": stamp,
        }
        if not missing:
            return json_response(200, body)
        kind = object_type.rstrip("s").upper().replace("COMPANIE", "COMPANY")
        body["numErrors"] = 1
        body["errors"] = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": f"Could not get some {kind} objects, they may be deleted or not exist. "
                "Check that ids are valid.",
                "context": {"ids": missing},
            }
        ]
        return json_response(207, body)

    # -- properties ---------------------------------------------------------------------------------

    def list_properties(self, request: Request) -> Response:
        """`GET /crm/v3/properties/{type}`."""
        return json_response(
            200, {"results": list(self.world.hubspot.properties[_object_type(request)].values())}
        )

    def get_property(self, request: Request) -> Response:
        """`GET /crm/v3/properties/{type}/{name}`; 404 when it does not exist."""
        object_type, name = _object_type(request), request.path_params["name"]
        prop = self.world.hubspot.properties[object_type].get(name)
        if prop is None:
            raise HubSpotError(404, f"Unable to find property with name {name}", "OBJECT_NOT_FOUND")
        return json_response(200, prop)

    def update_property(self, request: Request) -> Response:
        """`PATCH /crm/v3/properties/{type}/{name}`: a new label, type or fieldType (a valid pair)."""
        object_type, name, body = _object_type(request), request.path_params["name"], request.json()
        prop = self.world.hubspot.properties[object_type].get(name)
        if prop is None:
            raise HubSpotError(404, f"Unable to find property with name {name}", "OBJECT_NOT_FOUND")
        updated = {
            **prop,
            **{k: v for k, v in body.items() if k in ("label", "type", "fieldType", "description")},
        }
        if updated["fieldType"] not in VALID_FIELD_TYPES.get(updated["type"], frozenset()):
            raise HubSpotError(
                400,
                f"fieldType {updated['fieldType']!r} is not valid for type {updated['type']!r}",
                "VALIDATION_ERROR",
            )
        self.world.hubspot.properties[object_type][name] = updated
        return json_response(200, updated)

    def create_property(self, request: Request) -> Response:
        """`POST /crm/v3/properties/{type}`: valid type/fieldType pairs only, 409 on a taken name."""
        object_type, body = _object_type(request), request.json()
        self._check_new_property(object_type, body)
        return json_response(201, self.world.hubspot.add_property(object_type, body))

    def batch_create_properties(self, request: Request) -> Response:
        """`POST /crm/v3/properties/{type}/batch/create`: each input as one create; 207 lists the refused.

        Real HubSpot's answer to a batch holding a taken name is not pinned down in the reference;
        this look-alike creates the rest and reports each refusal, and crmhub copes with either.
        """
        object_type, inputs = _object_type(request), request.json()["inputs"]
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 100:
            raise HubSpotError(400, "inputs: between 1 and 100 properties", "VALIDATION_ERROR")
        results, errors = [], []
        for body in inputs:
            try:
                self._check_new_property(object_type, body)
            except HubSpotError as error:
                name = body.get("name") if isinstance(body, dict) else None
                errors.append(
                    {
                        "status": "error",
                        "category": error.category,
                        "message": error.message,
                        "context": {"name": [str(name)]},
                    }
                )
                continue
            results.append(self.world.hubspot.add_property(object_type, body))
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if errors:
            answer |= {"errors": errors, "numErrors": len(errors)}
        return json_response(207 if errors else 201, answer)

    def _check_new_property(self, object_type: str, body: Any) -> None:
        """Raise HubSpot's error for a property that cannot be created as `body` asks."""
        if not isinstance(body, dict):
            raise HubSpotError(400, "Property values were not valid: not an object", "VALIDATION_ERROR")
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise HubSpotError(
                400, f"Property values were not valid: missing {', '.join(missing)}", "VALIDATION_ERROR"
            )
        allowed = VALID_FIELD_TYPES.get(body["type"])
        if allowed is None:
            raise HubSpotError(400, f"Unknown property type {body['type']!r}", "VALIDATION_ERROR")
        if body["fieldType"] not in allowed:
            raise HubSpotError(
                400,
                f"fieldType {body['fieldType']!r} is not valid for type {body['type']!r}",
                "VALIDATION_ERROR",
            )
        if body["groupName"] not in self.world.hubspot.groups[object_type]:
            raise HubSpotError(400, f"Property group {body['groupName']} does not exist", "VALIDATION_ERROR")
        if body["name"] in self.world.hubspot.properties[object_type]:
            raise HubSpotError(
                409, f"Property named '{body['name']}' already exists.", "OBJECT_ALREADY_EXISTS"
            )

    def list_groups(self, request: Request) -> Response:
        """`GET /crm/v3/properties/{type}/groups`."""
        return json_response(
            200, {"results": list(self.world.hubspot.groups[_object_type(request)].values())}
        )

    def get_group(self, request: Request) -> Response:
        """`GET /crm/v3/properties/{type}/groups/{name}`."""
        group = self.world.hubspot.groups[_object_type(request)].get(request.path_params["name"])
        if group is None:
            raise HubSpotError(404, f"Unable to find group {request.path_params['name']}", "OBJECT_NOT_FOUND")
        return json_response(200, group)

    def create_group(self, request: Request) -> Response:
        """`POST /crm/v3/properties/{type}/groups`; 409 on a taken name."""
        object_type, body = _object_type(request), request.json()
        if not body.get("name") or not body.get("label"):
            raise HubSpotError(
                400, "Property group values were not valid: name and label are required", "VALIDATION_ERROR"
            )
        groups = self.world.hubspot.groups[object_type]
        if body["name"] in groups:
            raise HubSpotError(
                409, f"A property group named '{body['name']}' already exists.", "OBJECT_ALREADY_EXISTS"
            )
        group = {
            "name": body["name"],
            "label": body["label"],
            "displayOrder": body.get("displayOrder", -1),
            "archived": False,
        }
        groups[body["name"]] = group
        return json_response(201, group)


def _sort_key(obj: CrmObject, name: str) -> tuple[int, int, Any]:
    value = _comparable(name, obj.properties.get(name))
    if value is None:
        return (1, 0, 0)
    # Numbers before text, so a property holding both kinds still sorts without a TypeError.
    return (0, 1, value) if isinstance(value, str) else (0, 0, value)


def _fits(kind: str, value: Any) -> bool:
    """Whether HubSpot takes `value` for a property of `kind` ("" or null clears any of them)."""
    if value is None or value == "":
        return True
    text = str(value)
    if kind == "number":
        try:
            float(text)
        except ValueError:
            return False
        return True
    if kind == "bool":
        return text in ("true", "false")
    if kind in ("date", "datetime"):
        # Epoch milliseconds, or an ISO date (a date property at midnight UTC).
        return text.isdigit() or _iso_date(text)
    return True


def _iso_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
