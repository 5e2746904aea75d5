"""A field's stored values when its type changes: converted as new values would be, or cleared.

A widening to text (an automatic field meeting a value of another kind) is one `UPDATE` whose
SQL gives each value the text `stored_text` gives a value written now, on either backend. A change
to another typed kind (a rule's new type) converts value by value with the mapper's converters:
SQL cannot parse text the way they do. What does not fit the new type is cleared and counted; the
raw records still hold it.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, ColumnElement, Connection, Text, case, cast, func, literal, select, update

from field_mapping.convert import CONVERTERS, as_text
from field_mapping.transforms import TransformError
from field_mapping.types import STORAGE, Column, Columns, FieldType, from_columns
from sync.store.field_columns import add_column, column_name, drop_column, fields_table
from sync.store.upsert import Row, write_rows

__all__ = ["Moved", "move_values", "stored_text"]

# Contacts converted per statement.
_CHUNK = 2_000
# Values a report names, each in at most so many characters; the rest are counted.
_SHOWN = 3
_SHOW_MAX = 80
# Whole numbers below this (a bigint's range) are written out in full: 12, not "12.0" or "1.2e+16".
_WHOLE_MAX = 2**63
# Type changes whose stored values are all values of the new type, in its column, as they are.
_SAME_VALUES = frozenset({(FieldType.INTEGER, FieldType.DECIMAL), (FieldType.DATE, FieldType.DATETIME)})


class Moved(NamedTuple):
    """What a type change did to the stored values: how many it cleared, and the first few by contact."""

    cleared: int = 0
    shown: tuple[tuple[int, Any], ...] = ()

    def report(self, name: str, old: FieldType, new: FieldType) -> str:
        """The run report's line for the values the change of field `name` cleared."""
        shown = ", ".join(f"contact {contact_id}: {_show(value)}" for contact_id, value in self.shown)
        more = f" and {self.cleared - len(self.shown):,} more" if self.cleared > len(self.shown) else ""
        count = "1 stored value" if self.cleared == 1 else f"{self.cleared:,} stored values"
        return (
            f"{name}: type changed from {old} to {new}; {count} not fitting {new} cleared ({shown}{more}); "
            "the raw records keep them: fix the values at the source, or choose a type that holds them"
        )


def stored_text(ftype: FieldType, value: Any) -> str:
    """A typed value as a text column holds it once its field widens to text: `as_text` of it as stored."""
    if STORAGE[ftype] is Column.NUM:
        # As the float column reads back, so a value moved later gives the same text (1.50 -> "1.5"),
        # and a whole number as sources send one (12, not "12.0").
        number = float(value)
        if number.is_integer() and abs(number) < _WHOLE_MAX:
            return str(int(number))
        return as_text(Decimal(repr(number)))
    return as_text(value)


def move_values(conn: Connection, field_id: int, old: FieldType, new: FieldType) -> Moved:
    """Convert field `field_id`'s stored values from `old` to `new`, in the caller's transaction.

    A value that fits moves to the column of `new` (the same column when the storage kind is
    shared); one that does not is cleared with its provenance kept, like a record's value that
    does not fit.
    """
    if _keeps_values(old, new):
        return Moved()
    before = column_name(field_id, old)
    after = add_column(conn, field_id, new)
    if STORAGE[new] is Column.TEXT:
        table = fields_table([before, after])
        held = table.c[before]
        text = _text_sql(conn.dialect.name, old, held)
        conn.execute(update(table).where(held.is_not(None)).values({after: text}))
        drop_column(conn, before)
        return Moved()
    moved = _convert_each(conn, before, after, old, new)
    if before != after:
        drop_column(conn, before)
    return moved


def _keeps_values(old: FieldType, new: FieldType) -> bool:
    """Whether every stored value of `old` is already one of `new`, in the column of `new`."""
    if STORAGE[old] is not STORAGE[new]:
        return False
    # Text stays text (string -> enum, e-mail -> string); decimal -> integer and datetime -> date
    # are checked value by value.
    return old is new or STORAGE[old] is Column.TEXT or (old, new) in _SAME_VALUES


def _text_sql(dialect: str, old: FieldType, held: Any) -> ColumnElement[Any]:
    """SQL giving `stored_text(old, value)` for each value of the column `held` on `dialect`."""
    storage = STORAGE[old]
    if storage is Column.BOOL:
        return case((held, literal("true")), else_=literal("false"))
    if storage is Column.NUM:
        whole = cast(cast(held, BigInteger), Text)
        if old is FieldType.INTEGER:
            return whole
        # In this order: PostgreSQL refuses to cast a double beyond a bigint's range. Other numbers
        # read as the backend writes a double, which is Python's text for up to 15 significant
        # digits from 0.0001 to 10^15 (beyond that, the notation may differ: "1e-05", "1.0e-05").
        return case(
            (func.abs(held) >= float(_WHOLE_MAX), cast(held, Text)),
            (held == cast(held, BigInteger), whole),
            else_=cast(held, Text),
        )
    if dialect == "postgresql":
        utc = func.timezone("UTC", held)
        if old is FieldType.DATE:
            return func.to_char(utc, "YYYY-MM-DD")
        micros = func.to_char(utc, "US")
        fraction = case((micros == "000000", literal("")), else_=literal(".") + micros)
        return func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS') + fraction + literal("+00:00")
    # SQLite keeps times as UTC text, `2026-01-02 03:04:05.678000`.
    if old is FieldType.DATE:
        return func.substr(held, 1, 10)
    micros = func.substr(held, 20)
    fraction = case((micros.in_(["", ".000000"]), literal("")), else_=micros)
    iso = func.substr(held, 1, 10) + literal("T") + func.substr(held, 12, 8)
    return iso + fraction + literal("+00:00")


def _convert_each(conn: Connection, before: str, after: str, old: FieldType, new: FieldType) -> Moved:
    """Convert the values of column `before` into column `after` (maybe the same), chunk by chunk."""
    table = fields_table(sorted({before, after}))
    ids, held, column = table.c.contact_id, table.c[before], STORAGE[old].value
    cleared, shown = 0, list[tuple[int, Any]]()
    last = 0
    while True:
        query = select(ids, held).where(held.is_not(None), ids > last).order_by(ids).limit(_CHUNK)
        rows = conn.execute(query).all()
        if not rows:
            return Moved(cleared, tuple(shown))
        last = rows[-1][0]
        written: list[Row] = []
        for contact_id, raw in rows:
            typed = from_columns(old, Columns(**{column: raw}))
            fits, value = _converted(new, typed)
            if not fits:
                cleared += 1
                if len(shown) < _SHOWN:
                    shown.append((contact_id, typed))
            # A new column starts empty; in a shared one only what changes is written.
            if value is not None if before != after else not fits or value != raw:
                written.append((contact_id, value))
        write_rows(conn, table, ("contact_id", after), written, keys=("contact_id",), update=(after,))  # type: ignore[arg-type]


def _converted(new: FieldType, typed: Any) -> tuple[bool, Any]:
    """A stored value as `new`'s column holds it, and whether it fits (None when it does not)."""
    if typed == "":
        return True, None  # no value for a typed field, as the mapper has it
    candidates = [typed, as_text(typed)]
    if isinstance(typed, datetime) and typed.time() == time():
        candidates.append(typed.date())  # midnight UTC: the date a date field holds
    convert = CONVERTERS[new]
    for candidate in candidates:
        try:
            # The region only matters to e-mails and phones, which are text and moved in SQL.
            value = convert(candidate, "")
        except TransformError:
            continue
        if value is not None:
            if new is FieldType.DATE:
                return True, datetime.combine(value, time(), tzinfo=UTC)
            return True, value
    return False, None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."
