"""E-mail and phone normalization, shared by field values and identity resolution."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

__all__ = ["normalize_email", "normalize_phone"]

# A strict subset of what email-validator accepts (plain ASCII dot-atoms, letter TLD): such
# addresses skip the full validator, which costs ~50 µs each. A test checks the subset claim.
_SIMPLE_EMAIL = re.compile(
    r"[a-z0-9_+-]{1,64}(?:\.[a-z0-9_+-]{1,64})*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_SPECIAL_TLDS = frozenset(SPECIAL_USE_DOMAIN_NAMES)
_CACHE_SIZE = 65_536
_PUNCTUATION = str.maketrans("", "", " ()-./\t")
_DIALLED = re.compile(r"\+?[0-9]{3,20}")


@lru_cache(maxsize=_CACHE_SIZE)
def normalize_email(raw: str) -> tuple[str, bool]:
    """(stripped lowercase address, valid): invalid addresses are kept, flagged False."""
    value = raw.strip().lower()
    if _simple_email(value):
        return value, True
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return value, False
    return checked.normalized.lower(), True


def _simple_email(value: str) -> bool:
    if len(value) > 254 or _SIMPLE_EMAIL.fullmatch(value) is None:
        return False
    local, domain = value.rsplit("@", 1)
    # The validator rejects these; leave them to it so its message and verdict stay the reference.
    return len(local) <= 64 and "--" not in domain and domain.rsplit(".", 1)[-1] not in _SPECIAL_TLDS


# Each phone is normalized twice per record (its field and its identity hint): the second time is
# one lookup here instead of stripping and matching it again.
@lru_cache(maxsize=_CACHE_SIZE)
def normalize_phone(raw: str, region: str) -> tuple[str, bool]:
    """(E.164 number, valid), reading national numbers in `region`; invalid ones kept stripped, False."""
    value = raw.strip()
    # Punctuation does not change what phonenumbers reads, so "(415) 555-2671" and "415-555-2671"
    # share one cache entry: the same person's number typed differently in each source is parsed once.
    key = value.translate(_PUNCTUATION)
    number = _e164(key if _DIALLED.fullmatch(key) else value, region)
    return (number, True) if number else (value, False)


@lru_cache(maxsize=_CACHE_SIZE)
def _e164(text: str, region: str) -> str:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
