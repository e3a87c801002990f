"""Settings every service shares, read from environment variables only."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Base of each service's settings; a service subclasses it and adds its own fields.

    The variable names are the same in every service (DATABASE_URL, AMQP_URL, ...) because each
    service runs in its own process or container with its own environment.
    """

    # An empty variable is an unset one: docker-compose.yml passes every optional setting as
    # ${NAME:-}, and what the operator left out keeps its default.
    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_ignore_empty=True)

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    database_url: str
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = "klaspost.events"
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = 64 * 1024
    db_pool_size: int = 10

    # Access tokens: identity signs them; every service verifies them with identity's public keys.
    token_issuer: str = "klaspost-identity"
    token_audience: str = "klaspost-identity"
    jwks_url: str | None = None
    jwks_json: str | None = None

    # Event delivery tuning.
    prefetch: int = 32
    retry_delays_ms: list[int] = [1_000, 10_000, 60_000]
    outbox_sweep_seconds: float = 5.0
    outbox_batch: int = 500
    publish_timeout_seconds: float = 10.0
    outbox_retention_days: int = 7
    inbox_retention_days: int = 30
    housekeeping_every_seconds: float = 3600.0
