"""Settings: names and defaults; .env.example lists and docs/settings.md documents each one."""

from __future__ import annotations

import re

from adapters.app.settings import Settings
from adapters.cli.ask import AskSettings
from tests.support import REPO

ROOT = REPO
SPEC_DEFAULTS = {
    "slack_api_url": "https://slack.com/api/",
    "microsoft_app_type": "MultiTenant",
    "teams_allow_unauthenticated": False,
    "ollama_base_url": "http://localhost:11434",
    "ollama_model": "codellama:7b",
    "ollama_num_ctx": 4096,
    "ollama_max_concurrency": 2,
    "premium_model": "gpt-4.1",
    "premium_users": "*",
    "premium_monthly_budget_usd": 20,
    "premium_workspace_monthly_budget_usd": 0,
    "database_url": "sqlite:///chatbot.db",
    "rate_limit_per_minute": 10,
    "rate_limit_per_day": 100,
    "memory_ttl_seconds": 604800,
    "max_input_chars": 8000,
    "shutdown_grace_seconds": 30,
    "log_level": "INFO",
    "log_format": "text",
    "port": 3000,
}


def test_defaults_match_the_contract(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    for name, value in SPEC_DEFAULTS.items():
        assert getattr(settings, name) == value, name
    assert settings.slack_bot_token is None and settings.redis_url is None
    assert settings.effective_redis_url == "redis://localhost:6379/0"


def test_env_example_lists_exactly_the_settings() -> None:
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    # The server's settings and `chatbot ask`'s (CHATBOT_URL, CHATBOT_TOKEN).
    names = {*Settings.model_fields, *AskSettings.model_fields}
    assert listed == {name.upper() for name in names}


def test_every_setting_is_documented_on_the_settings_page() -> None:
    page = (ROOT / "docs/settings.md").read_text()
    missing = [n.upper() for n in Settings.model_fields if f"`{n.upper()}`" not in page]
    assert missing == []


def test_several_ollama_urls_and_blank_values(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://gpu:11434/, http://cpu:11434")
    monkeypatch.setenv("SLACK_APP_TOKEN", "")
    monkeypatch.setenv("REDIS_URL", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ollama_urls == ["http://gpu:11434", "http://cpu:11434"]
    assert settings.slack_app_token is None and settings.redis_url is None
