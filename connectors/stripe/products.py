"""The products of subscription items, read through `/v1/products?ids[]=...` and kept for one pull.

Stripe refuses expand paths deeper than 4 levels, and a listed subscription's product is five
(`data.items.data.price.product`); events never expand anything. So both paths carry
`items.data[].price.product` as an id, and this fills it with the product object, the shape a
retrieve with `expand[]=items.data.price.product` gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.paginators import require_list
from connectors.stripe.client import StripeApi

__all__ = ["IDS_PER_REQUEST", "Products"]

# `ids` returns one page of at most `limit` (100) objects and cannot be paged with starting_after.
IDS_PER_REQUEST = 100


def _product_ids(subscription: Mapping[str, Any]) -> list[str]:
    items = subscription.get("items")
    data = items.get("data") if isinstance(items, Mapping) else None
    ids = []
    for item in data if isinstance(data, list) else []:
        price = item.get("price") if isinstance(item, Mapping) else None
        product = price.get("product") if isinstance(price, Mapping) else None
        if isinstance(product, str) and product:
            ids.append(product)
    return ids


class Products:
    """A cache of products by id; one per pull, so a run costs about one request for its products."""

    def __init__(self, api: StripeApi) -> None:
        self.api = api
        # None: asked for and not returned (deleted); asking again would not change that this run.
        self._known: dict[str, Mapping[str, Any] | None] = {}

    def fill(self, subscriptions: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Copies of `subscriptions` with each item's `price.product` id replaced by the product."""
        wanted = list(
            dict.fromkeys(i for s in subscriptions for i in _product_ids(s) if i not in self._known)
        )
        for start in range(0, len(wanted), IDS_PER_REQUEST):
            chunk = wanted[start : start + IDS_PER_REQUEST]
            page = self.api.get("/v1/products", {"ids": chunk, "limit": IDS_PER_REQUEST})
            self._known.update(dict.fromkeys(chunk))
            for product in require_list("stripe", page, "data"):
                if isinstance(product, Mapping) and product.get("id") in self._known:
                    self._known[str(product["id"])] = product
        return [self._filled(s) for s in subscriptions]

    def _filled(self, subscription: Mapping[str, Any]) -> Mapping[str, Any]:
        if not any(self._known.get(i) for i in _product_ids(subscription)):
            return subscription
        items = subscription["items"]
        return {**subscription, "items": {**items, "data": [self._item(i) for i in items["data"]]}}

    def _item(self, item: Any) -> Any:
        price = item.get("price") if isinstance(item, Mapping) else None
        product = price.get("product") if isinstance(price, Mapping) else None
        found = self._known.get(product) if isinstance(product, str) else None
        if found is None or not isinstance(price, Mapping):
            return item
        return {**item, "price": {**price, "product": found}}
