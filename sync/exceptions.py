"""Errors of the sync package."""

from __future__ import annotations


class SyncError(Exception):
    """Base of the sync package's errors; the message names the thing, the cause and the fix."""


class StoreUnavailableError(SyncError):
    """The database cannot be reached or opened."""


class SchemaOutOfDateError(SyncError):
    """The database schema is behind the code and migrations on start are switched off."""


class TooManyFieldsError(SyncError):
    """The store holds as many field columns as it can; new fields need narrower auto patterns."""
