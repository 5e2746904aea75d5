"""Connectors: one module per source, the stream contract, pagination, HTTP retry and rate limits."""

from connectors.records import Batch, ContactEvent, Record

__all__ = ["Batch", "ContactEvent", "Record"]
