"""Settings read from the environment and `.env`, exactly as ../shared/SPEC.md names them.

Only the composition root reads these; everything below it takes plain arguments.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SYSTEM_PROMPT = (
    "You are a concise assistant for software engineers, answering in a team chat. "
    "Give correct, practical answers; prefer short explanations and working code in "
    "fenced code blocks with a language tag. Say so when you are not sure."
)
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
# OpenAI list prices in US dollars per million (input, output) tokens, 2025. A dated
# snapshot (gpt-4o-2024-08-06) is priced as its family. PREMIUM_PRICES_USD overrides or
# adds entries, e.g. for an OpenAI-compatible endpoint's own model names.
DEFAULT_PREMIUM_PRICES_USD: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
}


class Settings(BaseSettings):
    """Every setting of the bot, with SPEC's defaults."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    microsoft_app_id: str = ""
    microsoft_app_password: SecretStr | None = None
    microsoft_app_type: Literal["MultiTenant", "SingleTenant", "UserAssignedMSI"] = "MultiTenant"
    microsoft_app_tenant_id: str = ""
    teams_allow_unauthenticated: bool = False

    ollama_base_url: str = "http://localhost:11434"
    ollama_model: str = "codellama:7b"
    ollama_num_ctx: int = Field(default=4096, ge=256)
    ollama_max_concurrency: int = Field(default=2, ge=1)

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    premium_model: str = "gpt-4.1"
    premium_users: str = "*"
    premium_monthly_budget_usd: float = Field(default=20.0, ge=0)
    premium_workspace_monthly_budget_usd: float = Field(default=0.0, ge=0)
    # Not in the contract: JSON {"model": [input, output]} in USD per million tokens.
    premium_prices_usd: dict[str, tuple[NonNegativeFloat, NonNegativeFloat]] = Field(
        default_factory=dict
    )

    redis_url: str | None = None
    database_url: str = "sqlite:///chatbot.db"

    rate_limit_per_minute: int = Field(default=10, ge=0)
    rate_limit_per_day: int = Field(default=100, ge=0)
    memory_ttl_seconds: int = Field(default=604800, ge=1)
    max_input_chars: int = Field(default=8000, ge=1)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)

    # Not in the contract: how long accepted work of a dead replica waits before another
    # replica takes it over (also the conversation lock's time to live).
    work_reclaim_seconds: float = Field(default=30.0, gt=0)

    knowledge_sources: str = ""
    knowledge_store: str = "./knowledge"
    embedding_model: str = "nomic-embed-text"
    knowledge_refresh_minutes: float = Field(default=60.0, ge=0)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    port: int = Field(default=3000, ge=1, le=65535)

    @field_validator(
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "microsoft_app_password",
        "openai_api_key",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `.env` files often carry `SLACK_APP_TOKEN=` to mean "off".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("knowledge_sources")
    @classmethod
    def _sources_parse(cls, value: str) -> str:
        from inference.knowledge.sources import parse_sources

        parse_sources(value)  # SourceError (a ValueError) names the entry and what is wrong
        return value

    @field_validator("redis_url", "openai_base_url", mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def ollama_urls(self) -> list[str]:
        """The Ollama servers in failover order."""
        return [u.strip().rstrip("/") for u in self.ollama_base_url.split(",") if u.strip()]

    @property
    def premium_allowlist(self) -> frozenset[str] | None:
        """The user ids allowed `/premium`; None means everyone (`*`, or left blank)."""
        ids = {u.strip() for u in self.premium_users.split(",") if u.strip()}
        return None if not ids or "*" in ids else frozenset(ids)

    @property
    def premium_prices(self) -> dict[str, tuple[float, float]]:
        """USD per million (input, output) tokens per model: the defaults plus overrides."""
        return {**DEFAULT_PREMIUM_PRICES_USD, **self.premium_prices_usd}

    @property
    def slack_enabled(self) -> bool:
        """Slack is on when a bot token is configured."""
        return self.slack_bot_token is not None

    @property
    def effective_redis_url(self) -> str:
        """The Redis URL to try: the configured one, else localhost."""
        return self.redis_url or DEFAULT_REDIS_URL
