"""The `crmhub` command line."""

try:
    from crmhub.cli.app import app, main
except KeyboardInterrupt:
    # The console script imports this before anything else can catch a Ctrl-C, and importing every
    # command (typer, SQLAlchemy, pydantic) takes about half a second: exit as the shell expects.
    raise SystemExit(130) from None

__all__ = ["app", "main"]
