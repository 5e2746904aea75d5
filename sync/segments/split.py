"""A/B variants: a stable hash of (segment key, contact id) into 10,000 buckets, in SQL and in Python.

The hash is integer arithmetic that both backends compute identically (no md5 in SQLite):
h1 = (id * 48271 + s1) mod p, bucket = ((h1 * h1 + s2) mod p) mod 10000 with p = 2^31 - 1 and seeds
s1, s2 from SHA-256 of the segment key. Squaring makes the bucket order differ between segments.
`holdout = 10` keeps 10% of the members apart; the split weights share the other buckets in
proportion (`split = {a = 50, b = 50}, holdout = 10` gives a 45%, b 45%, holdout 10%). Holdout
contacts are members whose variant is "holdout": they appear in the segment and its transitions,
and consumers that send messages skip that variant.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, case, literal, null

from sync.segments.config import SegmentConfig

__all__ = ["BUCKETS", "HOLDOUT", "bucket", "variant", "variant_sql"]

BUCKETS = 10_000
HOLDOUT = "holdout"
_P = 2_147_483_647
_A = 48_271


def _seeds(key: str) -> tuple[int, int]:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % _P, int.from_bytes(digest[8:16], "big") % _P


def bucket(key: str, contact_id: int) -> int:
    """The bucket in [0, 10000) of a contact in a segment; the same forever."""
    s1, s2 = _seeds(key)
    h1 = (contact_id * _A + s1) % _P
    return ((h1 * h1 + s2) % _P) % BUCKETS


def _cuts(segment: SegmentConfig) -> list[tuple[str, int]]:
    """(variant, exclusive upper bucket) in order, ending at BUCKETS; "" is a member without a variant."""
    if not segment.split and not segment.holdout:
        return []
    # The holdout is a percentage of members; the split weights share the rest in proportion.
    rest = BUCKETS - BUCKETS * (segment.holdout or 0) // 100
    weights = list((segment.split or {"": 1}).items())
    total = sum(w for _, w in weights)
    cuts, running = [], 0
    for name, weight in weights:
        running += weight
        cuts.append((name, rest * running // total))
    if segment.holdout:
        cuts.append((HOLDOUT, BUCKETS))
    return cuts


def variant(segment: SegmentConfig, key: str, contact_id: int) -> str | None:
    """The variant a contact gets on entering the segment, or None when the segment has no split."""
    cuts = _cuts(segment)
    if not cuts:
        return None
    b = bucket(key, contact_id)
    name = next(name for name, upper in cuts if b < upper)
    return name or None


def variant_sql(segment: SegmentConfig, key: str, contact_id: ColumnElement[Any]) -> ColumnElement[Any]:
    """The same as `variant`, as a SQL CASE over a contact-id column."""
    cuts = _cuts(segment)
    if not cuts:
        return null()
    s1, s2 = _seeds(key)
    h1 = (contact_id * literal(_A, BigInteger) + literal(s1, BigInteger)) % literal(_P, BigInteger)
    b = ((h1 * h1 + literal(s2, BigInteger)) % literal(_P, BigInteger)) % literal(BUCKETS, BigInteger)
    whens = [(b < upper, literal(name) if name else null()) for name, upper in cuts[:-1]]
    last = cuts[-1][0]
    return case(*whens, else_=literal(last) if last else null())
