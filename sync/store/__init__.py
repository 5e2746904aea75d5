"""The contact store: tables, engine, migrations."""

from sync.store.engine import create_store_engine, normalize_url, write_transaction
from sync.store.migrate import SchemaStatus, ensure_schema, status, upgrade

__all__ = [
    "SchemaStatus",
    "create_store_engine",
    "ensure_schema",
    "normalize_url",
    "status",
    "upgrade",
    "write_transaction",
]
