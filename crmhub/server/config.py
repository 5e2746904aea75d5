"""`[server]`: where `crmhub serve` listens and how it stops."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ServerConfig(BaseModel):
    """`[server]`: the address, the admin token's variable, the shutdown grace, connection limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8484, ge=1, le=65535)
    admin_token_env: str = "CRMHUB_ADMIN_TOKEN"
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    proxy_headers: bool = False
    forwarded_allow_ips: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    # Over this many open connections (or running requests) uvicorn answers 503 instead of serving.
    limit_concurrency: int = Field(default=1000, ge=1)
    # An idle kept-alive connection is closed after this long.
    keep_alive_seconds: int = Field(default=5, ge=1)
    # A request whose body has not fully arrived by then is answered 408 and its socket freed.
    body_timeout_seconds: float = Field(default=30.0, gt=0)
