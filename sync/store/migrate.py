"""Schema migrations with Alembic, driven from code (no alembic.ini needed by users)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import OperationalError

from sync.exceptions import SchemaOutOfDateError

_SCRIPT_LOCATION = "sync.store:migrations"

# The PostgreSQL advisory lock every migrating crmhub takes ("crmhubdb" as a 64-bit number): replicas
# started together with migrate_on_start queue on it instead of creating the same tables at once.
_PG_LOCK = int.from_bytes(b"crmhubdb", "big")
# SQLite gives up waiting for its write lock after busy_timeout (10 s, sync.store.engine); a migration
# of a big store takes longer, so a second migrating process asks again, up to about five minutes.
_SQLITE_LOCK_TRIES = 30


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where the database is, where the code is, and what is still to apply."""

    current: str | None
    head: str
    pending: list[str]
    # False when the store is at a revision this crmhub does not ship (a newer crmhub migrated it).
    known: bool = True
    # What the upgrade that returned this applied itself, oldest first (another process may have
    # applied what was pending when it began).
    applied: list[str] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        """True when every migration has been applied."""
        return self.current == self.head

    def unknown_error(self) -> SchemaOutOfDateError:
        """The error for a store at a revision this crmhub does not know."""
        return SchemaOutOfDateError(
            f"database: the store is at schema revision {self.current}, which this crmhub does not "
            f"know (it knows up to {self.head}): it was written by a newer crmhub; upgrade crmhub"
        )


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", _SCRIPT_LOCATION)
    return config


def upgrade(engine: Engine) -> SchemaStatus:
    """Apply every pending migration; running it again, or in several processes at once, changes nothing."""
    current = status(engine)
    if not current.known:
        # Alembic would fail with "Can't locate revision"; a downgrade is never what a user means.
        raise current.unknown_error()
    if current.up_to_date:
        # Every command and server start comes here: a store at head is only read, never locked.
        return current
    config = _config()
    with _alone(engine) as connection:
        # Read under the lock: a process that waited for it finds what the one before it applied.
        before = _status(connection)
        if not before.known:
            raise before.unknown_error()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return replace(status(engine), applied=before.pending)


@contextmanager
def _alone(engine: Engine) -> Iterator[Connection]:
    """A transaction that one migrating process at a time holds; the others wait for it to end."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            _take_sqlite_write_lock(connection)
        elif engine.dialect.name == "postgresql":
            # Held until the transaction ends: the migrations commit (or roll back) with it.
            connection.execute(select(func.pg_advisory_xact_lock(_PG_LOCK)))
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


def _take_sqlite_write_lock(connection: Connection) -> None:
    """Begin a transaction that holds SQLite's write lock from its first statement (BEGIN IMMEDIATE).

    Else two processes read the empty schema side by side, and the one that waited for the other's
    write fails on its stale read ("database is locked"). The first statement writes the header's
    user_version (which crmhub does not use) back unchanged: a write that works on an empty file.
    """
    version = int(connection.exec_driver_sql("PRAGMA user_version").scalar_one())
    connection.rollback()
    for tries_left in reversed(range(_SQLITE_LOCK_TRIES)):
        try:
            connection.exec_driver_sql(f"PRAGMA user_version = {version}")
            return
        except OperationalError as exc:
            connection.rollback()
            if tries_left == 0 or "database is locked" not in str(exc.orig):
                raise


def status(engine: Engine) -> SchemaStatus:
    """Read the applied revision and list the pending ones, oldest first."""
    with engine.connect() as connection:
        return _status(connection)


def _status(connection: Connection) -> SchemaStatus:
    script = ScriptDirectory.from_config(_config())
    head = script.get_current_head()
    assert head is not None, "crmhub ships at least one migration"
    current = MigrationContext.configure(connection).get_current_revision()
    try:
        pending = [rev.revision for rev in script.iterate_revisions(head, current)]
    except (CommandError, RevisionError):
        return SchemaStatus(current=current, head=head, pending=[], known=False)
    pending.reverse()
    return SchemaStatus(current=current, head=head, pending=pending)


def ensure_schema(engine: Engine, *, migrate: bool) -> SchemaStatus:
    """Bring the schema to head when allowed, else refuse to run on an old schema."""
    if migrate:
        return upgrade(engine)
    current = status(engine)
    if not current.known:
        raise current.unknown_error()
    if not current.up_to_date:
        raise SchemaOutOfDateError(
            f"database: schema is at revision {current.current or 'none'}, this crmhub needs "
            f"{current.head}: run `crmhub db upgrade` (database.migrate_on_start is false)"
        )
    return current
