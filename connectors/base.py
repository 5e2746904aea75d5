"""The stream contract: a Source declares Streams; a Stream pulls Batches from a cursor.

Adding a connector: subclass Stream (declare `name`, `key`, `cursor_field`, `paginator`, write
`pull`), group the streams in a Source, and register a builder in `connectors.factory`. The cursor
rules every stream follows are in docs/connectors.md.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.exceptions import PermanentError
from connectors.paginators import Paginator
from connectors.records import Batch

__all__ = [
    "Source",
    "Stream",
    "decode_cursor",
    "encode_cursor",
    "from_epoch",
    "parse_time",
    "unreadable_cursor",
]


def encode_cursor(state: Mapping[str, Any]) -> str:
    """A cursor as compact, stable JSON."""
    return json.dumps(state, separators=(",", ":"), sort_keys=True)


def unreadable_cursor(source: str, stream: str, cursor: str | None) -> PermanentError:
    """The error for a saved cursor a stream cannot read: the fix is a full re-list."""
    return PermanentError(
        f"{source}.{stream}: unreadable cursor {(cursor or '')[:60]!r}: "
        f"run `crmhub sync --source {source} --full`"
    )


def decode_cursor(source: str, stream: str, cursor: str | None) -> dict[str, Any] | None:
    """A saved cursor back as a dict; None for no cursor; a clear error for one we did not write."""
    if cursor is None:
        return None
    try:
        state = json.loads(cursor)
    except ValueError:
        state = None
    if not isinstance(state, dict):
        raise unreadable_cursor(source, stream, cursor)
    return state


def from_epoch(seconds: float) -> datetime:
    """A Unix timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 string (with `Z` or an offset) as an aware datetime; naive values are taken as UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Stream(ABC):
    """One kind of object of a source.

    `pull(cursor, now=..., full=...)` yields one Batch per page fetched. Each Batch carries the
    cursor to save *after* its records are stored: resuming from it neither skips nor repeats
    anything. `full=True` ignores the cursor and re-lists everything.
    """

    source: str = ""
    name: str = ""
    key: str = "id"
    cursor_field: str = ""
    paginator: Callable[..., Paginator]

    @property
    def qualified_name(self) -> str:
        """`source.stream`, as shown to users."""
        return f"{self.source}.{self.name}"

    @abstractmethod
    def pull(self, cursor: str | None, *, now: datetime, full: bool = False) -> Iterator[Batch]:
        """Batches from `cursor` (None: the first run) up to now; see the class docstring."""


class Source(ABC):
    """A provider we pull from: a name and its streams."""

    name: str = ""
    # True when its streams may be pulled at once: its client, limits and retrier are thread-safe
    # and the provider's limits leave room. Otherwise a run pulls them one after another.
    streams_side_by_side: bool = False

    @property
    @abstractmethod
    def streams(self) -> Sequence[Stream]:
        """The streams this source pulls, in the order a run should pull them."""

    def stream(self, name: str) -> Stream:
        """The stream called `name`, or a PermanentError listing the ones that exist."""
        for stream in self.streams:
            if stream.name == name:
                return stream
        known = ", ".join(s.name for s in self.streams)
        raise PermanentError(f"{self.name}: no stream {name!r}: use one of {known}")
