"""What every command gets: where the config is, and error handling that ends in an exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from connectors.exceptions import ConnectorError
from crmhub.cli._output import errors, print_error
from crmhub.settings import ConfigError, Settings, config_path, load_settings
from sync.exceptions import SyncError
from sync.store import create_store_engine, ensure_schema
from sync.store.engine import describe_error

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


@dataclass
class CliContext:
    """State shared by the commands of one invocation."""

    config: Path | None = None
    # The store the loaded configuration names, so a database error can name its file.
    database_url: str | None = None

    @property
    def path(self) -> Path:
        """The config file this invocation reads."""
        return config_path(self.config)

    def __post_init__(self) -> None:
        # The latest invocation's context, for `exit_codes`, which commands call without it.
        _invocation.set(self)

    def settings(self) -> Settings:
        """Load and validate the configuration."""
        settings = load_settings(self.path)
        self.database_url = settings.database.url
        return settings

    def engine(self, settings: Settings, *, migrate: bool | None = None) -> Engine:
        """Open the store and make sure its schema is current; say so when that made a new SQLite file."""
        engine = create_store_engine(settings.database.url)
        new_file = _missing_sqlite_file(engine)
        ensure_schema(engine, migrate=settings.database.migrate_on_start if migrate is None else migrate)
        if new_file is not None and new_file.exists():
            # A relative path follows the current directory: run elsewhere, the data seems gone.
            relative = "" if Path(str(engine.url.database)).is_absolute() else ", relative to this directory"
            errors.print(
                f"[yellow]note[/] no store at {new_file} yet (database.url{relative}): created an empty "
                "one; `crmhub sync` fills it",
                soft_wrap=True,
            )
        return engine


def _missing_sqlite_file(engine: Engine) -> Path | None:
    """The SQLite file `engine` would create on first use, or None (it exists, or is not a file)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or engine.url.query:
        return None
    path = Path(database).resolve()
    return None if path.exists() else path


_invocation: ContextVar[CliContext | None] = ContextVar("crmhub_invocation", default=None)


def report_config_error(exc: ConfigError) -> None:
    """Print every configuration problem as `path: expected ..., found ...`."""
    # A problem found after loading (a secret read when a source starts) is still about this file.
    cli = _invocation.get()
    file = exc.file or (cli.path if cli is not None else None)
    if exc.problems and all(p.path.startswith("--") for p in exc.problems):
        # A mistyped option (`--source strpe`) is no mistake of the file's.
        errors.print("[bold red]error in the command's options[/]")
    else:
        where = f" in {file}" if file else ""
        errors.print(f"[bold red]configuration error{where}[/]")
    for problem in exc.problems:
        errors.print(f"  {problem}", markup=False)


@contextmanager
def exit_codes() -> Iterator[None]:
    """Turn known errors into a clear message and an exit code; never a traceback."""
    try:
        yield
    except ConfigError as exc:
        report_config_error(exc)
        raise typer.Exit(EXIT_USAGE) from None
    except (SyncError, ConnectorError) as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_FAILED) from None
    except DBAPIError as exc:
        cli = _invocation.get()
        print_error(describe_error(exc, cli.database_url if cli is not None else None))
        raise typer.Exit(EXIT_FAILED) from None
