"""What a connector yields: records, contact events, and page batches that carry their cursor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Record:
    """One object pulled from a stream: its external id, its time and its raw payload."""

    source: str
    stream: str
    external_id: str
    updated_at: datetime
    payload: Mapping[str, Any]
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class ContactEvent:
    """Something a person did at a time, with the identities that say who it was."""

    source: str
    name: str
    external_id: str
    occurred_at: datetime
    identities: Mapping[str, str]
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Batch:
    """One page of a stream: records and events, and the cursor to save once they are stored.

    `cursor` is opaque to everything but the stream that made it; None means "no change".
    `full` marks a batch of a full re-list (first run, `--full`, or a fallback); `fallback_reason`
    is set on the first batch of a full re-list the stream chose itself, for the run to report;
    `warnings` are the stream's other notes on this page for the run report.
    """

    source: str
    stream: str
    records: list[Record] = field(default_factory=list)
    events: list[ContactEvent] = field(default_factory=list)
    cursor: str | None = None
    requests: int = 1
    full: bool = False
    fallback_reason: str | None = None
    # What the run report should warn about this page (shown once per stream and text).
    warnings: list[str] = field(default_factory=list)
