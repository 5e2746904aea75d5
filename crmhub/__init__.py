"""crmhub: the application shell (settings, CLI, server, sandbox, demo)."""

__version__ = "0.1.0"
