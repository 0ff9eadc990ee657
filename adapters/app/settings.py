"""Settings read from the environment and `.env` (docs/settings.md documents every one).

Only the composition root reads these; everything below it takes plain arguments.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SYSTEM_PROMPT = (
    "You are a concise assistant for software engineers, answering in a team chat. "
    "Give correct, practical answers; prefer short explanations and working code in "
    "fenced code blocks with a language tag. Say so when you are not sure."
)
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_DATABASE_URL = "sqlite:///chatbot.db"
# Credentials that a copied `.env.example` (or a tutorial) leaves in place of a real value:
# treated as unset, and `chatbot doctor` says so.
_PLACEHOLDER_PREFIX = re.compile(r"^(?:xoxb|xoxp|xapp|sk(?:-proj)?)-", re.IGNORECASE)
# What is left after the prefix: nothing, or at least 8 of 0/x (xoxb-0000-xxxx..., 000...).
_PLACEHOLDER_BODY = re.compile(r"^(?:[0x_\-.]{8,})?$", re.IGNORECASE)
_PLACEHOLDER_WORDS = re.compile(
    r"^(?:<.*>|\.\.\.|changeme|change-me|replace-?me|todo|your[-_ ].*|\$\{.*\})$", re.IGNORECASE
)
_CREDENTIALS = (
    "slack_bot_token",
    "slack_signing_secret",
    "slack_app_token",
    "microsoft_app_id",
    "microsoft_app_password",
    "microsoft_app_tenant_id",
    "openai_api_key",
)


def is_placeholder(value: str) -> bool:
    """Whether a credential is an example value (all zeros or x's, `<...>`, `your-...`)."""
    text = value.strip()
    body = _PLACEHOLDER_PREFIX.sub("", text)
    return bool(text) and (
        _PLACEHOLDER_BODY.match(body) is not None
        or any(_PLACEHOLDER_WORDS.match(part) for part in (text, body))
    )


def data_dir() -> Path:
    """Where the bot keeps its own files when not told otherwise: $XDG_DATA_HOME/chatbot,
    else ~/.local/share/chatbot. The same place from every working directory."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "chatbot"


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
    """Every setting of the bot, with its default."""

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
    ollama_max_concurrency: int = Field(default=2, ge=1)  # per server, for the whole fleet

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
    database_url: str = DEFAULT_DATABASE_URL

    rate_limit_per_minute: int = Field(default=10, ge=0)
    rate_limit_per_day: int = Field(default=100, ge=0)
    memory_ttl_seconds: int = Field(default=604800, ge=1)
    max_input_chars: int = Field(default=8000, ge=1)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # Up to four prompts offered when someone opens the bot's DM (Slack) or personal chat
    # (Teams' prompt starters): a JSON list of "Title | message" strings; unset = defaults.
    suggested_prompts: list[str] | None = Field(default=None, max_length=4)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)

    # Not in the contract: how long accepted work of a dead replica waits before another
    # replica takes it over (also the conversation lock's time to live).
    work_reclaim_seconds: float = Field(default=30.0, gt=0)

    knowledge_sources: str = ""
    knowledge_store: str = "./knowledge"
    embedding_model: str = "nomic-embed-text"
    knowledge_refresh_minutes: float = Field(default=60.0, ge=0)
    knowledge_allow_private: str = ""

    # The team API: how long a personal token lives; the bot's address as people reach it.
    api_token_days: int = Field(default=90, ge=1, le=3650)
    public_url: str = ""

    # Analytics for the team lead: who may ask `/admin` for a sign-in link, the bot's public
    # base URL that link is built on, and whether the page shows (redacted) question texts.
    admin_users: str = ""
    analytics_show_questions: bool = False

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
        if not value.strip():
            return value  # no team knowledge: its stack stays unimported
        from inference.knowledge.sources import parse_sources

        parse_sources(value)  # SourceError (a ValueError) names the entry and what is wrong
        return value

    @field_validator("knowledge_allow_private")
    @classmethod
    def _allow_private_parses(cls, value: str) -> str:
        if not value.strip():
            return value  # nothing allowed: the loaders (bs4, pypdf) stay unimported
        from inference.knowledge.loaders import parse_allow_private

        parse_allow_private(value)  # ValueError names the entry that is not a host or network
        return value

    @field_validator("redis_url", "openai_base_url", mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("slack_api_url", "ollama_base_url", "openai_base_url")
    @classmethod
    def _http_urls(cls, value: str | None) -> str | None:
        # A typo'd scheme (`htp://gpu-host:11434`) would otherwise be taken as a path on
        # localhost. The value is not repeated: it may hold a password.
        for url in (value or "").split(","):
            scheme = url.strip().partition("://")[0] if "://" in url else ""
            if url.strip() and scheme.lower() not in ("http", "https"):
                shown = f"the scheme {scheme!r}" if scheme else "a URL without a scheme"
                raise ValueError(f"{shown} is not http:// or https://")
        return value

    _placeholders: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _placeholders_are_unset(self) -> Settings:
        found = []
        for name in _CREDENTIALS:
            value = getattr(self, name)
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(text, str) and is_placeholder(text):
                found.append(name.upper())
                setattr(self, name, "" if isinstance(value, str) else None)
        self._placeholders = tuple(found)
        return self

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The credentials that held an example value and are therefore treated as unset."""
        return self._placeholders

    @property
    def database_is_default(self) -> bool:
        """DATABASE_URL was not set: the ledger is the SQLite file in `data_dir()`."""
        return "database_url" not in self.model_fields_set and (
            self.database_url == DEFAULT_DATABASE_URL
        )

    @property
    def effective_database_url(self) -> str:
        """The database to use. Unset, the default SQLite file is resolved to one place
        (`data_dir()/chatbot.db`), so every command from every folder shares one ledger."""
        if not self.database_is_default:
            return self.database_url
        folder = data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'chatbot.db'}"

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
    def admin_user_ids(self) -> frozenset[str]:
        """The user ids allowed `/admin` (none: the analytics page has no sign-in)."""
        return frozenset(u.strip() for u in self.admin_users.split(",") if u.strip())

    @property
    def effective_public_url(self) -> str:
        """The bot's address as people reach it, without a trailing slash."""
        return (self.public_url.strip() or f"http://localhost:{self.port}").rstrip("/")

    @property
    def premium_prices(self) -> dict[str, tuple[float, float]]:
        """USD per million (input, output) tokens per model: the defaults plus overrides."""
        return {**DEFAULT_PREMIUM_PRICES_USD, **self.premium_prices_usd}

    @property
    def effective_redis_url(self) -> str:
        """The Redis URL to try: the configured one, else localhost."""
        return self.redis_url or DEFAULT_REDIS_URL


def describe_errors(exc: Exception) -> list[str]:
    """A settings error as lines a person can act on: the variable and what is wrong with
    it, never its value (it may be a secret) nor a link to pydantic's documentation."""
    if isinstance(exc, ValidationError):
        lines = []
        for error in exc.errors(include_input=False, include_url=False):
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            lines.append(f"{name}: {error['msg']}")
        return lines
    # pydantic-settings' SettingsError: a value that should be JSON is not.
    return [f"cannot read the settings: {exc}"]


def settings_source() -> str:
    """Where the settings are read from, for messages."""
    env_file = Path(".env")
    return f"environment and {env_file.resolve()}" if env_file.is_file() else "environment"
