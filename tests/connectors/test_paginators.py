"""Paginators: tokens, ends, loop guard, malformed pages."""

from __future__ import annotations

import pytest

from connectors import MalformedPageError, PaginationLoopError
from connectors.paginators import HubSpotPaginator, StripePaginator, TypeformPaginator


def test_stripe_pages_by_last_id_while_has_more() -> None:
    paginator = StripePaginator()
    assert paginator.params() == {}
    paginator.update({"data": [{"id": "a"}, {"id": "b"}], "has_more": True})
    assert paginator.params() == {"starting_after": "b"} and not paginator.finished
    paginator.update({"data": [{"id": "c"}], "has_more": False})
    assert paginator.finished


def test_hubspot_follows_paging_next_after() -> None:
    paginator = HubSpotPaginator()
    paginator.update({"results": [{}], "paging": {"next": {"after": "100"}}})
    assert paginator.params() == {"after": "100"}
    paginator.update({"results": []})
    assert paginator.finished


def test_typeform_pages_by_before_until_a_short_page() -> None:
    paginator = TypeformPaginator(page_size=2)
    paginator.update({"items": [{"token": "t1"}, {"token": "t2"}]})
    assert paginator.params() == {"before": "t2"}
    paginator.update({"items": [{"token": "t3"}]})
    assert paginator.finished


@pytest.mark.parametrize(
    ("paginator", "page"),
    [
        (StripePaginator(), {"data": [{"id": "x"}], "has_more": True}),
        (HubSpotPaginator(), {"results": [], "paging": {"next": {"after": "x"}}}),
        (TypeformPaginator(page_size=1), {"items": [{"token": "x"}]}),
    ],
)
def test_two_identical_tokens_in_a_row_raise(paginator: StripePaginator, page: dict[str, object]) -> None:
    paginator.update(page)
    with pytest.raises(PaginationLoopError, match=r"token 'x' twice in a row"):
        paginator.update(page)


@pytest.mark.parametrize(
    ("paginator", "page", "match"),
    [
        (StripePaginator(), {"has_more": True}, "'data' is missing"),
        (StripePaginator(), {"data": [{"no": "id"}], "has_more": True}, "has no 'id'"),
        (HubSpotPaginator(), ["not", "an", "object"], "expected a JSON object"),
        (TypeformPaginator(page_size=1), {"items": [{}]}, "has no 'token'"),
    ],
)
def test_malformed_pages_are_clear_errors(paginator: StripePaginator, page: object, match: str) -> None:
    with pytest.raises(MalformedPageError, match=match):
        paginator.update(page)  # type: ignore[arg-type]
