"""HubSpot object streams: search by last-modified time, ascending, paged by time.

Cursor (JSON): ``{"since": MS, "seen": {id: MS2}}`` -- objects whose last-modified time is
``>= MS`` (inclusive, epoch milliseconds), minus those whose id and time are in ``seen`` (already
stored). An object modified again has a newer time and is pulled again: the boundary is
de-duplicated by id + time, not by id alone. The first run and ``full=True`` start at 0.

Paging is by time, not by offset: each next page is a new search ``>= T``, T the newest time read
so far in the run, and ``seen`` skips what the overlap at T reads again. HubSpot's ``after`` is an
offset into a live result list: an object on an earlier page modified mid-run moves to its end and
every later row shifts left, so an offset would jump over one. ``after`` is used only while a whole
page shares T (time cannot advance past a tie); an object of that millisecond modified between
those pages can still shift another past the offset, a window that needs ``page_size`` objects
written in one millisecond. A search is read past its first page only in such a tie, so the
10,000-result cap is reached only by 10,000 objects in one millisecond: a PermanentError.

After every page ``since`` becomes T, but never later than ``now`` minus SEARCH_INDEX_LAG: HubSpot's
search index lags writes by seconds, so an object modified just before a newer one may be indexed
after it. Everything pulled inside that window stays in ``seen``, so the overlap is read again by
the next run but not yielded again. Each page's Batch carries the cursor that covers it and every
page before it, to be saved with its records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import Stream, decode_cursor, encode_cursor, parse_time, unreadable_cursor
from connectors.exceptions import MalformedPageError, PermanentError
from connectors.hubspot.client import HubSpotApi, PropertyDefinition
from connectors.paginators import HubSpotPaginator, require_list
from connectors.records import Batch, Record

__all__ = ["BATCH_READ_LIMIT", "SEARCH_INDEX_LAG", "SEARCH_RESULT_CAP", "HubSpotStream", "modified_field"]

SEARCH_RESULT_CAP = 10_000
BATCH_READ_LIMIT = 100
SEARCH_INDEX_LAG = timedelta(seconds=30)


def modified_field(object_type: str) -> str:
    """The last-modified property: contacts have their own name for it."""
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def _millis(value: Any) -> int | None:
    """A HubSpot time (ISO-8601 or epoch-ms string) as epoch milliseconds."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    parsed = parse_time(value)
    return int(parsed.timestamp() * 1000) if parsed else None


class HubSpotStream(Stream):
    """One HubSpot object type (contacts, companies, deals); cursor rules in the module docstring."""

    source = "hubspot"
    key = "id"
    paginator = HubSpotPaginator
    search_cap = SEARCH_RESULT_CAP

    def __init__(
        self,
        api: HubSpotApi,
        object_type: str,
        *,
        properties: Callable[[str], Sequence[PropertyDefinition]],
        selected: Sequence[str] = (),
        page_size: int = 100,
    ) -> None:
        self.api = api
        self.name = object_type
        self.cursor_field = modified_field(object_type)
        self._definitions = properties
        self._selected = list(selected)
        self.page_size = page_size

    def property_names(self) -> list[str]:
        """The properties to pull: the configured ones this object defines, or all of them."""
        defined = [d.name for d in self._definitions(self.name)]
        names = [n for n in self._selected if n in defined] if self._selected else defined
        return sorted({*names, self.cursor_field})

    def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
        """Objects modified since the cursor, oldest first; see the module docstring."""
        state = None if full else decode_cursor(self.source, self.name, cursor)
        since, seen = self._since_and_seen(state, cursor)
        horizon = int((now - SEARCH_INDEX_LAG).timestamp() * 1000)
        properties = self.property_names()
        # `at` is where the current search starts; unlike `since` it is not held back by the lag,
        # or a run with a page's worth of objects inside the lag would search them again and again.
        at, paginator, offset = since, HubSpotPaginator(), 0
        while True:
            page = self.api.search(self.name, self._search_body(at, paginator.token, properties))
            results = require_list(self.source, page, "results")
            paginator.update(page)
            stamped = [(obj, self._stamp(obj)) for obj in results]
            records = [self._record(o, t) for o, t in stamped if seen.get(str(o["id"])) != t]
            seen.update((str(o["id"]), t) for o, t in stamped)
            newest = max((t for _, t in stamped), default=at)
            since = max(since, min(newest, horizon))
            seen = {key: stamp for key, stamp in seen.items() if stamp >= since}
            yield Batch(
                source=self.source,
                stream=self.name,
                records=records,
                cursor=encode_cursor({"since": since, "seen": dict(sorted(seen.items()))}),
                requests=self.api.retrier.take_attempts(),
                full=state is None,
            )
            if paginator.finished:
                return
            offset += len(results)
            if newest > at:
                at, paginator, offset = newest, HubSpotPaginator(), 0
            elif offset + self.page_size > self.search_cap:
                raise PermanentError(
                    f"hubspot.{self.name}: more than {self.search_cap} objects modified at one "
                    f"{self.cursor_field} value ({at}), which search cannot page past: report it"
                )

    def _since_and_seen(
        self, state: Mapping[str, Any] | None, cursor: str | None
    ) -> tuple[int, dict[str, int]]:
        """The cursor's `since` and `seen`, or (0, {}) for a full pull."""
        try:
            since = int(state["since"]) if state else 0
            seen = {str(k): int(v) for k, v in state.get("seen", {}).items()} if state else {}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise unreadable_cursor(self.source, self.name, cursor) from exc
        return since, seen

    def _search_body(self, at: int, after: str | None, properties: list[str]) -> dict[str, Any]:
        """One search for objects modified at or after `at`, oldest first, from offset `after`."""
        return {
            "filters": [{"property_name": self.cursor_field, "operator": "GTE", "value": str(at)}],
            "sorts": [{"propertyName": self.cursor_field, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": self.page_size,
            "after": after,
        }

    def read(self, ids: Sequence[str]) -> list[Record]:
        """The current state of the objects with these ids (batch read, 100 per request), as Records."""
        properties = self.property_names()
        records: list[Record] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH_READ_LIMIT):
            page = self.api.batch_read(self.name, unique[start : start + BATCH_READ_LIMIT], properties)
            records.extend(
                self._record(obj, self._stamp(obj)) for obj in require_list(self.source, page, "results")
            )
        return records

    def _stamp(self, obj: Any) -> int:
        props = obj.get("properties") if isinstance(obj, Mapping) else None
        stamp = _millis(props.get(self.cursor_field)) if isinstance(props, Mapping) else None
        if stamp is None and isinstance(obj, Mapping):
            stamp = _millis(obj.get("updatedAt"))
        if stamp is None or not isinstance(obj, Mapping) or obj.get("id") in (None, ""):
            raise MalformedPageError(
                f"hubspot: {self.name} search: malformed page: an object lacks id or {self.cursor_field}: "
                "check connectors.hubspot.base_url points at the HubSpot API"
            )
        return stamp

    def _record(self, obj: Mapping[str, Any], stamp: int) -> Record:
        return Record(
            source=self.source,
            stream=self.name,
            external_id=str(obj["id"]),
            updated_at=datetime.fromtimestamp(stamp / 1000, tz=UTC),
            payload=obj,
            deleted=bool(obj.get("archived")),
        )
