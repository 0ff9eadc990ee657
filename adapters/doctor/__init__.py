"""`chatbot doctor`: checks the configuration and every dependency, and says how to fix
what is wrong. Exit 0 when everything required works, 1 otherwise.

Required: valid settings, Redis when REDIS_URL is set, the database at the newest
migration, at least one Ollama server with the model pulled, and Slack / Teams when they
are configured. Optional (a warning, never exit 1): the OpenAI key, failover Ollama servers
while another one works, Redis on localhost when REDIS_URL is not set. No secret is ever
printed: URLs lose their passwords, tokens are never shown.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import IO

from adapters.app.settings import Settings, describe_errors, settings_source
from adapters.app.wiring import Runtime
from adapters.doctor.platforms import check_slack, check_teams
from adapters.doctor.report import CHECK_DEADLINE_SECONDS, Check, exit_code, render, safe
from adapters.doctor.services import check_database, check_ollama, check_openai, check_redis

log = logging.getLogger(__name__)

__all__ = [
    "Check",
    "check_database",
    "check_ollama",
    "check_openai",
    "check_redis",
    "check_slack",
    "check_teams",
    "exit_code",
    "render",
]


# -- settings -------------------------------------------------------------------------


def load_settings(load: Callable[[], Settings]) -> tuple[Settings | None, list[Check]]:
    """Parse the settings; on failure, one FAIL line per bad variable (values not shown)."""
    source = settings_source()
    try:
        settings = load()
    except Exception as exc:  # ValidationError, or pydantic-settings' SettingsError
        return None, [
            Check("FAIL", "settings", safe(line), f"correct it in the {source} (see .env.example)")
            for line in describe_errors(exc)
        ]
    checks = [Check("OK", "settings", f"valid (read from the {source})")]
    if settings.placeholders:
        checks.append(
            Check(
                "WARN",
                "settings",
                f"{', '.join(settings.placeholders)} still "
                f"{'holds' if len(settings.placeholders) == 1 else 'hold'} the example value "
                "from .env.example: treated as unset",
                "put the real value there, or leave it blank",
            )
        )
    if settings.log_level.upper() not in logging.getLevelNamesMapping():
        checks.append(
            Check(
                "WARN",
                "settings",
                f"LOG_LEVEL={settings.log_level} is not a log level; INFO is used",
                "set LOG_LEVEL to DEBUG, INFO, WARNING or ERROR",
            )
        )
    return settings, checks


# -- the whole report -----------------------------------------------------------------


async def _guarded(component: str, check: Awaitable[list[Check]]) -> list[Check]:
    """Run one check; an unexpected error or hang becomes a FAIL line, never a traceback."""
    try:
        async with asyncio.timeout(CHECK_DEADLINE_SECONDS):
            return await check
    except TimeoutError:
        return [Check("FAIL", component, f"no answer within {CHECK_DEADLINE_SECONDS:g} s")]
    except Exception as exc:
        return [Check("FAIL", component, f"the check failed: {type(exc).__name__}")]


async def diagnose(settings: Settings) -> list[Check]:
    """Check every dependency concurrently; the lines in a fixed order."""
    results = await asyncio.gather(
        _guarded("redis", check_redis(settings)),
        _guarded("database", check_database(settings)),
        _guarded("ollama", check_ollama(settings)),
        _guarded("openai", check_openai(settings)),
        _guarded("slack", check_slack(settings)),
    )
    checks = [check for result in results for check in result]
    if settings.knowledge_sources.strip():  # team knowledge: adapters/doctor/knowledge.py
        from adapters.doctor.knowledge import check_knowledge

        checks.extend(await _guarded("knowledge", check_knowledge(settings)))
    checks.extend(check_teams(settings))
    if settings.slack_bot_token is None and not settings.microsoft_app_id:
        checks.append(
            Check(
                "WARN",
                "platforms",
                "neither Slack nor Teams is configured: only `chatbot chat` can be used",
                "set SLACK_BOT_TOKEN (and SLACK_SIGNING_SECRET or SLACK_APP_TOKEN), or the "
                "MICROSOFT_APP_* settings",
            )
        )
    return checks


async def run(load: Callable[[], Settings] = Settings, *, out: IO[str] | None = None) -> int:
    """Run every check, print the report, return the exit code."""
    stream: IO[str] = out if out is not None else sys.stdout
    settings, checks = load_settings(load)
    if settings is not None:
        checks.extend(await diagnose(settings))
    stream.write(render(checks))
    stream.flush()
    return exit_code(checks)


def main(load: Callable[[], Settings] = Settings) -> int:
    """`chatbot doctor`."""
    # Libraries' own warnings would interleave with the report; it says everything.
    logging.basicConfig(level=logging.CRITICAL)
    return asyncio.run(run(load))


async def first_steps(settings: Settings, runtime: Runtime) -> None:
    """Say once, at start, what is missing and the next command: the model server (in
    doctor's words) and, with neither Slack nor Teams configured, how to try the bot."""
    for check in await check_ollama(settings):
        if check.status != "OK":
            log.warning("%s; fix: %s", check.what, check.fix)
    if runtime.slack is None and runtime.teams is None:
        log.warning(
            "Slack and Teams are both off (SLACK_BOT_TOKEN and MICROSOFT_APP_ID are not set), "
            "so nobody can reach this bot yet. Next: `chatbot chat` to try it in this "
            "terminal, `chatbot doctor` to check the setup, and the README's 'Connect Slack' "
            "to add Slack"
        )
