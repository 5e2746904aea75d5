"""Errors of consent handling; each message names the thing, the cause and the fix."""

from __future__ import annotations

from sync.exceptions import SyncError

__all__ = ["ConsentError", "UnknownContactError"]


class ConsentError(SyncError):
    """A consent statement or sender feedback cannot be applied as given."""


class UnknownContactError(ConsentError):
    """The contact named by an id, e-mail or phone is not in the store (a route answers 404)."""
