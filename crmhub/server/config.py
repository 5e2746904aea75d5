"""`[server]`: where `crmhub serve` listens and how it stops."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServerConfig(BaseModel):
    """`[server]`: the address, the admin token's variable, the shutdown grace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8484, ge=1, le=65535)
    admin_token_env: str = "CRMHUB_ADMIN_TOKEN"
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    proxy_headers: bool = False
    forwarded_allow_ips: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
