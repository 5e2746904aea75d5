"""An opt-out in the middle of a sync run acts when its page commits, not at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from sqlalchemy import Engine

from connectors import Batch, Record
from connectors.base import Source, Stream
from sync.engine import StreamReport, SyncEngine
from tests.consent.conftest import (
    NOW,
    assert_unsubscribed,
    delivery_statuses,
    evaluate,
    hubspot_contact,
    left_reasons,
    members,
    page_store,
)


class _Contacts(Stream):
    """HubSpot contacts in pages; Jane's opt-out is on the second of three."""

    source = "hubspot"
    name = "contacts"

    def __init__(self, pages: list[list[Record]]) -> None:
        self.pages = pages

    def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
        for number, page in enumerate(self.pages):
            yield Batch("hubspot", "contacts", page, cursor=str(number + 1))


class _HubSpot(Source):
    name = "hubspot"

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    @property
    def streams(self) -> Sequence[Stream]:
        return [self._stream]


def test_an_opt_out_on_page_two_is_in_force_when_page_two_commits(engine: Engine, jane: int) -> None:
    pages = [
        [hubspot_contact("700", email="ann@example.com", optout="false")],
        [hubspot_contact("501", email="JANE.DOE@example.com", optout="true")],
        [hubspot_contact("701", email="bob@example.com", optout="false")],
    ]
    seen: list[tuple[int, bool, str | None]] = []

    def after_page(report: StreamReport) -> None:
        if report.pages == 0:
            return  # the stream announced before its first page
        with engine.connect() as conn:
            reason = left_reasons(conn, jane).get("newsletter")
            seen.append((report.pages, jane in members(conn, "newsletter"), reason))

    sync = SyncEngine(engine, page_store(), evaluate)
    sync.run([_HubSpot(_Contacts(pages))], now=NOW, on_progress=after_page)
    assert seen[:3] == [(1, True, None), (2, False, "unsubscribed"), (3, False, "unsubscribed")]
    assert_unsubscribed(engine, jane, "newsletter", "mailer", kept="sms_offers")


def test_a_pushed_batch_takes_the_same_path(engine: Engine, jane: int) -> None:
    sync = SyncEngine(engine, page_store(), evaluate)
    sync.ingest(
        Batch("hubspot", "contacts", [hubspot_contact("501", email="jane.doe@example.com", optout="true")]),
        now=NOW,
    )
    with engine.connect() as conn:
        assert delivery_statuses(conn, jane)[("mailer", "entered")] == "cancelled"
    assert_unsubscribed(engine, jane, "newsletter", "mailer", kept="sms_offers")
