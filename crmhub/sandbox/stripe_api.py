"""The Stripe look-alike: customers, subscriptions, invoices, charges and events under `/v1/`."""

from __future__ import annotations

import base64
import bisect
import fnmatch
import json
from collections.abc import Callable
from typing import Any

from crmhub.sandbox import credentials
from crmhub.sandbox.asgi import Request, Response, Router, bracket_params, json_response
from crmhub.sandbox.stripe_store import EVENT_RETENTION_SECONDS, Collection, StripeObject, dumps
from crmhub.sandbox.world import SUBSCRIPTION_STATUSES, World

_LIST_STATUSES = (*SUBSCRIPTION_STATUSES, "all", "ended")
_RESOURCES = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "charges": "charge",
    "events": "event",
    "products": "product",
    "prices": "price",
}


class StripeError(Exception):
    """An error Stripe answers with `{"error": {...}}`."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def response(self) -> Response:
        """The error as Stripe's JSON body."""
        error: dict[str, Any] = {"type": "invalid_request_error", "message": self.message}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        return json_response(self.status, {"error": error})


def _authenticate(request: Request) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    key = value.strip()
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(key + "==").decode("latin-1").partition(":")[0]
        except ValueError:
            key = ""
    if not header:
        raise StripeError(401, "You did not provide an API key. Provide it as `Authorization: Bearer <key>`.")
    if key != credentials.STRIPE_API_KEY:
        raise StripeError(401, f"Invalid API Key provided: {key[:8]}{'*' * max(0, len(key) - 12)}{key[-4:]}")


# Bounds wider than any Unix time in the sandbox's world, for filters that give only one side.
_NO_TIME = (-(2**62), 2**62)


def _limit(params: dict[str, Any]) -> int:
    raw = params.get("limit", "10")
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise StripeError(400, f"Invalid integer: {raw}", "parameter_invalid_integer", "limit") from None
    if not 1 <= limit <= 100:
        bound = "greater than or equal to 1" if limit < 1 else "less than or equal to 100"
        raise StripeError(400, f"This value must be {bound}.", "parameter_invalid_integer", "limit")
    return limit


def _created_bounds(value: Any, name: str = "created") -> tuple[int, int] | None:
    """The inclusive (lowest, highest) `created` a filter allows, or None without a filter."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            exact = int(value)
            return exact, exact
        bounds = {op: int(v) for op, v in value.items()}
    except (TypeError, ValueError, AttributeError):
        raise StripeError(
            400, f"Invalid {name}: expected an integer or gt/gte/lt/lte", "parameter_invalid_integer", name
        ) from None
    unknown = set(bounds) - {"gt", "gte", "lt", "lte"}
    if unknown:
        raise StripeError(
            400, f"Received unknown parameter: {name}[{sorted(unknown)[0]}]", "parameter_unknown", name
        )
    low = max(bounds.get("gte", _NO_TIME[0]), bounds.get("gt", _NO_TIME[0] - 1) + 1)
    high = min(bounds.get("lte", _NO_TIME[1]), bounds.get("lt", _NO_TIME[1] + 1) - 1)
    return low, high


def _key_range(keys: list[tuple[int, int]], created: tuple[int, int] | None) -> tuple[int, int]:
    """The slice of a `(created, seq)`-ordered key list whose `created` lies within the bounds."""
    if created is None:
        return 0, len(keys)
    low, high = created
    # Sequence numbers start at 1, so (t, 0) sorts before every key created at t.
    return bisect.bisect_left(keys, (low, 0)), bisect.bisect_left(keys, (high + 1, 0))


# Stripe expands at most four levels, counting the `data` of a list: `data.items.data.price` is the
# deepest a subscriptions list allows, `data.items.data.price.product` is refused.
MAX_EXPAND_DEPTH = 4


def _array(raw: Any) -> list[str]:
    """A form array (`x[]=a`, `x[0]=a`, or a lone `x=a`) as a list of strings."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    return [str(v) for v in (raw.values() if isinstance(raw, dict) else raw)]


def _expansions(params: dict[str, Any]) -> list[list[str]]:
    paths = _array(params.get("expand"))
    for path in paths:
        if len(path.split(".")) > MAX_EXPAND_DEPTH:
            raise StripeError(
                400,
                f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property. Property: {path}",
                "property_expansion_max_depth",
            )
    return [p.split(".") for p in paths]


def _filtered(
    collection: Collection, keep: Callable[[StripeObject], bool]
) -> tuple[list[StripeObject], list[tuple[int, int]]]:
    """The objects `keep` admits, in order, and their keys."""
    items = [o for o in collection.items if keep(o)]
    return items, [o.key for o in items]


class StripeApi:
    """Handlers bound to one `World`."""

    def __init__(self, world: World) -> None:
        self.world = world
        # Events never change once made: each filter's matches are kept until the list or the clock moves.
        self._matching_events: dict[tuple[Any, ...], tuple[list[StripeObject], list[tuple[int, int]]]] = {}

    def register(self, router: Router) -> None:
        """Add every Stripe route to `router`."""
        router.add("GET", "/v1/customers", self._lister("customers", self._customer_filter))
        router.add("GET", "/v1/subscriptions", self._lister("subscriptions", self._subscription_filter))
        router.add("GET", "/v1/invoices", self._lister("invoices", self._invoice_filter))
        router.add("GET", "/v1/charges", self._lister("charges", self._charge_filter))
        router.add("GET", "/v1/events", self._lister("events", self._event_filter))
        router.add("GET", "/v1/products", self._lister("products", self._product_filter))
        router.add("GET", "/v1/prices", self._lister("prices", lambda p: None))
        for kind in _RESOURCES:
            router.add("GET", f"/v1/{kind}/{{id}}", self._retriever(kind))

    # -- filters: each turns list parameters into a predicate (None = keep everything) ----------------

    def _customer_filter(self, params: dict[str, Any]) -> Callable[[StripeObject], bool] | None:
        email = params.get("email")
        return None if email is None else (lambda o: o.data["email"] == email)

    def _subscription_filter(self, params: dict[str, Any]) -> Callable[[StripeObject], bool] | None:
        status = params.get("status")
        if status is not None and status not in _LIST_STATUSES:
            raise StripeError(
                400,
                f"Invalid status: must be one of {', '.join(_LIST_STATUSES)}",
                "parameter_invalid_string",
                "status",
            )
        customer, price = params.get("customer"), params.get("price")

        def keep(o: StripeObject) -> bool:
            s = o.data["status"]
            if status is None and s == "canceled":
                return False
            if status == "ended" and s not in ("canceled", "incomplete_expired"):
                return False
            if status not in (None, "all", "ended") and s != status:
                return False
            if customer is not None and o.data["customer"] != customer:
                return False
            return price is None or o.data["items"]["data"][0]["price"]["id"] == price

        return keep

    def _product_filter(self, params: dict[str, Any]) -> Callable[[StripeObject], bool] | None:
        if "ids" not in params:
            return None
        for cursor in ("starting_after", "ending_before"):
            if cursor in params:
                raise StripeError(
                    400, f"You may only specify one of these parameters: ids, {cursor}.", None, "ids"
                )
        ids = frozenset(_array(params["ids"]))
        return lambda o: o.data["id"] in ids

    def _invoice_filter(self, params: dict[str, Any]) -> Callable[[StripeObject], bool] | None:
        wanted = {k: params[k] for k in ("customer", "status", "subscription") if k in params}
        if not wanted:
            return None
        return lambda o: all(o.data.get(k) == v for k, v in wanted.items())

    def _charge_filter(self, params: dict[str, Any]) -> Callable[[StripeObject], bool] | None:
        customer = params.get("customer")
        return None if customer is None else (lambda o: o.data["customer"] == customer)

    def _event_filter(self, params: dict[str, Any]) -> Callable[[StripeObject], bool] | None:
        one, many = params.get("type"), params.get("types")
        if one is not None and many is not None:
            raise StripeError(
                400, "You may only specify one of these parameters: type, types.", "parameter_invalid_string"
            )
        patterns: list[str] = [one] if one is not None else []
        if many is not None:
            patterns = (
                [many]
                if isinstance(many, str)
                else list(many.values())
                if isinstance(many, dict)
                else list(many)
            )
            if len(patterns) > 20:
                raise StripeError(
                    400, "You may pass at most 20 event types.", "parameter_invalid_array", "types"
                )
        oldest = self.world.now - EVENT_RETENTION_SECONDS

        def keep(o: StripeObject) -> bool:
            if o.key[0] < oldest:
                return False
            return not patterns or any(fnmatch.fnmatchcase(o.data["type"], p) for p in patterns)

        return keep

    # -- handlers -----------------------------------------------------------------------------------

    def _lister(
        self, kind: str, make_filter: Callable[[dict[str, Any]], Callable[[StripeObject], bool] | None]
    ) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            try:
                _authenticate(request)
                params = bracket_params(request.query)
                return self._list(kind, params, make_filter(params))
            except StripeError as error:
                return error.response()

        return handle

    def _list(
        self, kind: str, params: dict[str, Any], keep: Callable[[StripeObject], bool] | None
    ) -> Response:
        limit = _limit(params)
        created = _created_bounds(params.get("created"))
        collection: Collection = self.world.stripe[kind]
        items, keys = collection.items, collection.keys
        if keep is not None:
            items, keys = self._kept(kind, params, collection, keep)
        # The list is ordered by creation time, so a `created` filter is a slice, as on an index.
        low, high = _key_range(keys, created)
        after, before = params.get("starting_after"), params.get("ending_before")
        if after is not None:
            cursor = self._cursor(collection, after, "starting_after")
            end = bisect.bisect_left(keys, cursor.key, low, high)
            page, has_more = items[max(low, end - limit) : end], end - low > limit
        elif before is not None:
            cursor = self._cursor(collection, before, "ending_before")
            begin = bisect.bisect_right(keys, cursor.key, low, high)
            page, has_more = items[begin : min(high, begin + limit)], begin + limit < high
        else:
            page, has_more = items[max(low, high - limit) : high], high - low > limit
        expansions = [p[1:] for p in _expansions(params) if p[0] == "data" and len(p) > 1]
        if expansions:
            bodies = []
            for obj in reversed(page):
                copy = json.loads(obj.raw)
                for path in expansions:
                    self.world.stripe.expand(copy, path)
                bodies.append(dumps(copy))
        else:
            bodies = [obj.raw for obj in reversed(page)]
        body = b"".join(
            (
                b'{"object":"list","data":[',
                b",".join(bodies),
                b'],"has_more":',
                b"true" if has_more else b"false",
                b',"url":"/v1/',
                kind.encode(),
                b'"}',
            )
        )
        return Response(200, body)

    def _kept(
        self, kind: str, params: dict[str, Any], collection: Collection, keep: Callable[[StripeObject], bool]
    ) -> tuple[list[StripeObject], list[tuple[int, int]]]:
        """The objects `keep` admits and their keys; for events, reused while nothing changed.

        Filtering every event on every page made a paged walk of one type quadratic in the events held.
        """
        if kind != "events":
            return _filtered(collection, keep)
        key = (params.get("type"), repr(params.get("types")), collection.version, self.world.now)
        kept = self._matching_events.get(key)
        if kept is None:
            if len(self._matching_events) > 32:
                self._matching_events.clear()
            kept = self._matching_events[key] = _filtered(collection, keep)
        return kept

    def _cursor(self, collection: Collection, object_id: str, param: str) -> StripeObject:
        found = collection.by_id.get(object_id)
        if found is None:
            raise StripeError(400, f"No such object: '{object_id}'", "resource_missing", param)
        return found

    def _retriever(self, kind: str) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            try:
                _authenticate(request)
                object_id = request.path_params["id"]
                found = self.world.stripe[kind].by_id.get(object_id)
                if found is None and kind == "customers" and object_id in self.world.stripe.deleted_customers:
                    return json_response(200, self.world.stripe.deleted_customers[object_id])
                if found is None:
                    raise StripeError(
                        404, f"No such {_RESOURCES[kind]}: '{object_id}'", "resource_missing", "id"
                    )
                expansions = _expansions(bracket_params(request.query))
                if not expansions:
                    return Response(200, found.raw)
                copy = json.loads(found.raw)
                for path in expansions:
                    self.world.stripe.expand(copy, path)
                return json_response(200, copy)
            except StripeError as error:
                return error.response()

        return handle
