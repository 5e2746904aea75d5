"""Who may be sent what, decided without a store: a `left` after its entry."""

from __future__ import annotations

import pytest

from webhooks.eligibility import Told, entry_told


@pytest.mark.parametrize(
    ("told", "expected"),
    [
        ([Told(7, None)], True),  # not fanned out yet (another fan-out holds it): it may go anywhere
        ([Told(7, "sms")], True),
        ([Told(7, "crm")], False),
        ([Told(7, "crm"), Told(8, None)], True),
        ([], False),
    ],
)
def test_a_left_reaches_an_endpoint_told_or_yet_to_be_told_of_an_entry(
    told: list[Told], expected: bool
) -> None:
    assert entry_told(told, "sms") is expected


def test_an_entry_of_the_same_batch_counts_only_where_it_is_sent() -> None:
    told = [Told(7, None)]
    assert entry_told(told, "sms", batch={7, 9}, sent_in_batch={7}) is True
    assert entry_told(told, "sms", batch={7, 9}, sent_in_batch=set()) is False
