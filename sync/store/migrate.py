"""Schema migrations with Alembic, driven from code (no alembic.ini needed by users)."""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Engine

from sync.exceptions import SchemaOutOfDateError

_SCRIPT_LOCATION = "sync.store:migrations"


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where the database is, where the code is, and what is still to apply."""

    current: str | None
    head: str
    pending: list[str]
    # False when the store is at a revision this crmhub does not ship (a newer crmhub migrated it).
    known: bool = True

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
    """Apply every pending migration; running it again changes nothing."""
    before = status(engine)
    if not before.known:
        # Alembic would fail with "Can't locate revision"; a downgrade is never what a user means.
        raise before.unknown_error()
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return status(engine)


def status(engine: Engine) -> SchemaStatus:
    """Read the applied revision and list the pending ones, oldest first."""
    script = ScriptDirectory.from_config(_config())
    head = script.get_current_head()
    assert head is not None, "crmhub ships at least one migration"
    with engine.connect() as connection:
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
