"""Alembic environment: runs on the connection crmhub hands over, or on sqlalchemy.url for authors."""

from __future__ import annotations

from alembic import context

from sync.store.engine import create_store_engine
from sync.store.tables import metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only ALTER by copying tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if _connection is not None:
    _run(_connection)
else:
    with create_store_engine(context.config.get_main_option("sqlalchemy.url") or "").begin() as conn:
        _run(conn)
