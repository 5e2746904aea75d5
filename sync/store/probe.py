"""Looking up many keys of a unique (kind, value) index on PostgreSQL: one probe per value, whatever the plan.

`kind = :kind AND value IN (...)` is what a page asks of the identities and of the suppression list.
On a table PostgreSQL has never analyzed (a first sync or a list import outruns autovacuum; CI's
server runs without it) the planner believed a kind holds a few rows, used only `kind` from the
index and filtered out every other row of that kind: 25 ms per lookup at 27,000 identities, and
growing with the table. Here the values come as one array, unnested and joined by LATERAL to a
LIMIT 1 subquery on the unique key, which can only be planned as an index probe per value.
SQLite plans the IN list by the index and keeps it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, Column, Select, String, bindparam, func, select, true

__all__ = ["probe_unique"]


def probe_unique(kind: Column[Any], value: Column[Any], *returned: Column[Any]) -> Select[Any]:
    """`(value, *returned)` of each value in the array bound as `values` stored under the bound `kind`."""
    values = func.unnest(bindparam("values", type_=ARRAY(String)))
    wanted = values.table_valued("value").render_derived(name="wanted")
    match = (
        select(value.label("found"), *returned)
        .where(kind == bindparam("kind"), value == wanted.c.value)
        .limit(1)
        .lateral("match")
    )
    return select(match.c.found, *(match.c[c.name] for c in returned)).select_from(wanted.join(match, true()))
