"""Connectors: one module per source, the stream contract, pagination, HTTP retry and rate limits."""

from connectors.base import Source, Stream, decode_cursor, encode_cursor
from connectors.config import ConnectorsConfig
from connectors.exceptions import (
    ConnectorError,
    InvalidMessageError,
    MalformedPageError,
    PaginationLoopError,
    PermanentError,
    RetryableError,
)
from connectors.factory import PULL_SOURCES, build_source, default_http_client
from connectors.http import Retrier, error_for_status, is_retryable_status
from connectors.hubspot import HubSpotSource, PropertyDefinition
from connectors.ratelimit import TokenBucket
from connectors.records import Batch, ContactEvent, Record
from connectors.segmentio import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    ParsedBatch,
    check_size,
    parse_batch,
    parse_message,
)
from connectors.stripe import StripeSource
from connectors.typeform import FormDefinition, FormField, TypeformSource

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "PULL_SOURCES",
    "Batch",
    "ConnectorError",
    "ConnectorsConfig",
    "ContactEvent",
    "FormDefinition",
    "FormField",
    "HubSpotSource",
    "InvalidMessageError",
    "MalformedPageError",
    "PaginationLoopError",
    "ParsedBatch",
    "PermanentError",
    "PropertyDefinition",
    "Record",
    "Retrier",
    "RetryableError",
    "Source",
    "Stream",
    "StripeSource",
    "TokenBucket",
    "TypeformSource",
    "build_source",
    "check_size",
    "decode_cursor",
    "default_http_client",
    "encode_cursor",
    "error_for_status",
    "is_retryable_status",
    "parse_batch",
    "parse_message",
]
