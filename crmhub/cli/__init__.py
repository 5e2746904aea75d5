"""The `crmhub` command line."""

from crmhub.cli.app import app, main

__all__ = ["app", "main"]
