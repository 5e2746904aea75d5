"""Configuration of the store."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator


class DatabaseConfig(BaseModel):
    """`[database]`: where the contact store lives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "sqlite:///crmhub.db"
    migrate_on_start: bool = True

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError(f'expected a sqlite:/// or postgresql:// URL, found "{value}"')
        return value
