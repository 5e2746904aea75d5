"""E-mail and phone normalization, shared by field values and identity resolution."""

from __future__ import annotations

import re

import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

__all__ = ["EXTENSION", "dialable", "normalize_email", "normalize_phone"]

# A strict subset of what email-validator accepts (plain ASCII dot-atoms, letter TLD): such
# addresses skip the full validator, which costs ~50 µs each. A test checks the subset claim.
_SIMPLE_EMAIL = re.compile(
    r"[a-z0-9_+-]{1,64}(?:\.[a-z0-9_+-]{1,64})*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_SPECIAL_TLDS = frozenset(SPECIAL_USE_DOMAIN_NAMES)
_CACHE_SIZE = 65_536
_PUNCTUATION = str.maketrans("", "", " ()-./\t")
_DIALLED = re.compile(r"\+?[0-9]{3,20}")
# RFC 3966's extension parameter, appended to the E.164 number: `+14155552671;ext=12`.
EXTENSION = ";ext="


# Not lru_cache: its entries are containers the garbage collector tracks, and with the three caches
# full every full collection walked about 150,000 of them, half its time. A dict of str to str is
# never tracked, so these memos cost the collector nothing; one that fills up is emptied.
class _Memo:
    """A bounded memo of str -> (str, valid)."""

    __slots__ = ("invalid", "valid")

    def __init__(self) -> None:
        self.valid: dict[str, str] = {}
        self.invalid: dict[str, str] = {}

    def get(self, key: str) -> tuple[str, bool] | None:
        """The memoized answer for `key`, or None."""
        value = self.valid.get(key)
        if value is not None:
            return value, True
        value = self.invalid.get(key)
        return None if value is None else (value, False)

    def put(self, key: str, answer: tuple[str, bool]) -> tuple[str, bool]:
        """Remember `answer` for `key`; returns it."""
        value, valid = answer
        held = self.valid if valid else self.invalid
        if len(held) >= _CACHE_SIZE:
            held.clear()
        held[key] = value
        return answer


_EMAILS = _Memo()
# Per region: raw phone -> answer, and stripped text -> E.164 ("" when invalid).
_PHONES: dict[str, _Memo] = {}
_NUMBERS: dict[str, dict[str, str]] = {}


def normalize_email(raw: str) -> tuple[str, bool]:
    """(stripped lowercase address, valid): invalid addresses are kept, flagged False."""
    return _EMAILS.get(raw) or _EMAILS.put(raw, _normalize_email(raw))


def _normalize_email(raw: str) -> tuple[str, bool]:
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
def normalize_phone(raw: str, region: str) -> tuple[str, bool]:
    """(E.164 number with any `;ext=`, valid), national numbers read in `region`; invalid: stripped, False.

    The extension stays so two people on one office line are two identities; `dialable` drops it.
    """
    memo = _PHONES.get(region) or _PHONES.setdefault(region, _Memo())
    return memo.get(raw) or memo.put(raw, _normalize_phone(raw, region))


def _normalize_phone(raw: str, region: str) -> tuple[str, bool]:
    value = raw.strip()
    # Punctuation does not change what phonenumbers reads, so "(415) 555-2671" and "415-555-2671"
    # share one memo entry: the same person's number typed differently in each source is parsed once.
    key = value.translate(_PUNCTUATION)
    number = _e164(key if _DIALLED.fullmatch(key) else value, region)
    return (number, True) if number else (value, False)


def _e164(text: str, region: str) -> str:
    numbers = _NUMBERS.get(region) or _NUMBERS.setdefault(region, {})
    number = numbers.get(text)
    if number is None:
        if len(numbers) >= _CACHE_SIZE:
            numbers.clear()
        number = numbers[text] = _parse_e164(text, region)
    return number


def _parse_e164(text: str, region: str) -> str:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"{e164}{EXTENSION}{number.extension}" if number.extension else e164


def dialable(number: str) -> str:
    """A normalized phone number without its extension: what an SMS sender can send to."""
    return number.partition(EXTENSION)[0]
