"""Field names: what is valid, how automatic names are built, and how they stay unique."""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "FIELD_NAME_MAX",
    "field_name",
    "is_field_name",
    "label_for",
    "name_part",
    "unique_name",
]

# Within PostgreSQL's 63-byte identifier limit and HubSpot's 100-character internal names.
FIELD_NAME_MAX = 63
_FIELD_NAME = re.compile(rf"[a-z][a-z0-9_]{{0,{FIELD_NAME_MAX - 1}}}")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_HASH_LEN = 8


def is_field_name(name: str) -> bool:
    """True for lowercase snake names starting with a letter, at most 63 characters."""
    return _FIELD_NAME.fullmatch(name) is not None


def name_part(text: str, *, split_camel: bool = True) -> str:
    """A path segment as a snake-case name part (`firstName` -> `first_name`, `a.b-c` -> `a_b_c`)."""
    if split_camel:
        text = _CAMEL.sub("_", text)
    return _NOT_WORD.sub("_", text.lower()).strip("_")


def field_name(prefix: str, parts: tuple[str, ...]) -> str:
    """`prefix` and path parts as a valid field name; long names keep a hash of the whole."""
    name = "_".join(p for p in (prefix, *map(name_part, parts)) if p)
    return _fit(name, name)


def unique_name(name: str, key: str) -> str:
    """A variant of `name` for another path `key` that produced the same name."""
    return _fit(name, key, force=True)


def label_for(name: str) -> str:
    """A human label from a field name (`stripe_subscription_status` -> `Stripe subscription status`)."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _fit(name: str, key: str, *, force: bool = False) -> str:
    if len(name) <= FIELD_NAME_MAX and not force:
        return name
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:_HASH_LEN]
    return f"{name[: FIELD_NAME_MAX - _HASH_LEN - 1].rstrip('_')}_{digest}"
