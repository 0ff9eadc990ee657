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
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import aiohttp
from redis.exceptions import AuthenticationError, RedisError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from adapters.metrics import public_url
from adapters.settings import Settings, describe_errors, settings_source
from adapters.wiring import (
    build_ollama,
    build_openai,
    build_redis,
    build_slack_client,
    slack_api_url,
    teams_credentials,
)
from bot import database, keys
from bot.redact import redact
from bot.workqueue import SetAside, set_aside_jobs
from inference.base import ModelNotFound, ModelUnavailable, ProviderAuthFailed
from inference.ollama import OllamaChatModel

Status = Literal["OK", "WARN", "FAIL"]

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
TIMEOUT_SECONDS = 3.0
# However a check goes wrong, doctor answers within this long.
CHECK_DEADLINE_SECONDS = 20.0
_SLACK_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: how a dependency is, and for a problem how to fix it."""

    status: Status
    component: str
    what: str
    fix: str = ""


SLACK_SIGNING_SECRET_LENGTH = 32  # Slack's signing secrets: 32 hexadecimal characters


def _safe(text: str) -> str:
    """Text with anything that looks like a secret replaced (error messages from drivers)."""
    return redact(text).text


# -- settings -------------------------------------------------------------------------


def load_settings(load: Callable[[], Settings]) -> tuple[Settings | None, list[Check]]:
    """Parse the settings; on failure, one FAIL line per bad variable (values not shown)."""
    source = settings_source()
    try:
        settings = load()
    except Exception as exc:  # ValidationError, or pydantic-settings' SettingsError
        return None, [
            Check("FAIL", "settings", _safe(line), f"correct it in the {source} (see .env.example)")
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


# -- Redis ----------------------------------------------------------------------------


async def check_redis(settings: Settings) -> list[Check]:
    """Redis answers (required when REDIS_URL is set; else localhost is only tried)."""
    url = settings.effective_redis_url
    shown = public_url(url)
    try:
        client = build_redis(settings)  # the bot's own client
    except ValueError:
        return [
            Check(
                "FAIL",
                "redis",
                f"REDIS_URL is not a Redis URL: {shown}",
                "set REDIS_URL like redis://host:6379/0 (rediss:// for TLS)",
            )
        ]
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS + 2):
            await client.ping()
            info = await client.info("server")
            aside = await set_aside_jobs(client, count=5)
    except AuthenticationError:
        return [
            Check(
                "FAIL",
                "redis",
                f"{shown} refused the credentials (password or user in REDIS_URL)",
                "put the right password in REDIS_URL (redis://:PASSWORD@host:6379/0)",
            )
        ]
    except (RedisError, OSError, TimeoutError) as exc:
        if settings.redis_url is None:
            return [
                Check(
                    "WARN",
                    "redis",
                    f"REDIS_URL is not set and no Redis answers on {shown}: memory would be "
                    "kept in-process (one process only, lost on restart)",
                    "for replicas or memory across restarts, start Redis and set REDIS_URL",
                )
            ]
        return [
            Check(
                "FAIL",
                "redis",
                f"{shown} does not answer ({type(exc).__name__})",
                f"start Redis at {shown}, or unset REDIS_URL to keep memory in this process",
            )
        ]
    finally:
        await client.aclose()
    version = info.get("redis_version", "?") if isinstance(info, dict) else "?"
    where = shown if settings.redis_url is not None else f"{shown} (REDIS_URL not set)"
    return [Check("OK", "redis", f"{where} answers (Redis {version})"), *_set_aside(aside)]


def _set_aside(jobs: Sequence[SetAside]) -> list[Check]:
    """The questions the work queue stopped trying (their askers were told)."""
    if not jobs:
        return []
    lines = [
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(job.at))} UTC {job.platform} "
        f"job {job.entry}, {job.deliveries} tries: {job.reason}"
        for job in jobs
    ]
    return [
        Check(
            "WARN",
            "queue",
            "questions set aside (newest first, at most 5): " + "; ".join(lines),
            "their askers were told to ask again; the log holds each one's traceback "
            f"(search for the job id); the list is the Redis stream {keys.set_aside()}",
        )
    ]


# -- database -------------------------------------------------------------------------


def _missing_sqlite_file(url: str) -> Path | None:
    """The SQLite file the URL names, when it does not exist yet."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database or ""
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    path = Path(name)
    return None if path.exists() else path


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(database.alembic_config())
    return {script.revision for script in scripts.walk_revisions()}


def _causes(exc: BaseException) -> list[BaseException]:
    """An exception and the ones it was raised from."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


async def check_database(settings: Settings) -> list[Check]:
    """The database answers and its migrations are at the newest revision."""
    url = settings.effective_database_url
    shown = database.redact_url(url)
    if settings.database_is_default:
        shown = f"{shown} (DATABASE_URL not set: the default place)"
    upgrade = "run `chatbot db upgrade`"
    missing = _missing_sqlite_file(url)
    if missing is not None:
        if not missing.parent.exists():
            return [
                Check(
                    "FAIL",
                    "database",
                    f"{shown}: the directory {missing.parent} does not exist",
                    f"create {missing.parent} or correct DATABASE_URL, then {upgrade}",
                )
            ]
        return [Check("FAIL", "database", f"{shown}: the database does not exist yet", upgrade)]
    try:
        revision = await asyncio.wait_for(
            asyncio.to_thread(database.current_revision, url), CHECK_DEADLINE_SECONDS - 5
        )
    except (database.DatabaseError, TimeoutError) as exc:
        reason = str(exc) if isinstance(exc, database.DatabaseError) else "no answer"
        # The server answered that the database is missing (PostgreSQL's SQLSTATE 3D000).
        missing_database = any(getattr(e, "sqlstate", None) == "3D000" for e in _causes(exc)) or (
            "database" in reason and "does not exist" in reason
        )
        return [
            Check(
                "FAIL",
                "database",
                f"{shown}: cannot connect ({_safe(reason)})",
                "the server runs but has no such database: create it (e.g. `createdb NAME`), "
                f"then {upgrade}"
                if missing_database
                else "start the database server or correct DATABASE_URL",
            )
        ]
    head = database.head_revision()
    if revision == head:
        return [Check("OK", "database", f"{shown} answers; migrations at head ({head})")]
    if revision is None:
        return [Check("FAIL", "database", f"{shown}: no tables yet (never migrated)", upgrade)]
    if revision in _known_revisions():
        return [
            Check(
                "FAIL",
                "database",
                f"{shown}: migrations at {revision}, this version needs {head}",
                upgrade,
            )
        ]
    return [
        Check(
            "FAIL",
            "database",
            f"{shown}: at revision {revision}, which this version does not know "
            "(a newer version of the bot migrated it)",
            "run the newer version of the bot, or restore a backup taken before it",
        )
    ]


# -- Ollama ---------------------------------------------------------------------------


async def _check_one_ollama(server: OllamaChatModel, model: str) -> Check:
    shown = public_url(server.base_url)
    try:
        await server.ping()
    except ModelNotFound:
        return Check(
            "FAIL",
            "ollama",
            f"{shown} answers but does not have the model {model}",
            f"run `ollama pull {model}` on {shown} (or set OLLAMA_MODEL to a pulled model)",
        )
    except ModelUnavailable:
        return Check(
            "FAIL",
            "ollama",
            f"{shown} does not answer as an Ollama server",
            f"start Ollama on {shown} (`ollama serve`; install it from ollama.com) or correct "
            "OLLAMA_BASE_URL",
        )
    finally:
        await server.aclose()
    return Check("OK", "ollama", f"{shown} answers and has {model}")


async def check_ollama(settings: Settings) -> list[Check]:
    """Every Ollama server answers and has the model. One working server is enough to
    answer (the others are failover): then the others' problems are warnings."""
    urls = settings.ollama_urls
    if not urls:
        return [
            Check(
                "FAIL",
                "ollama",
                "OLLAMA_BASE_URL names no server",
                "set OLLAMA_BASE_URL, e.g. http://localhost:11434",
            )
        ]
    servers = build_ollama(settings)  # the bot's own clients, in failover order
    model = settings.ollama_model
    checks = list(await asyncio.gather(*(_check_one_ollama(s, model) for s in servers)))
    if any(c.status == "OK" for c in checks):
        checks = [
            Check("WARN", c.component, f"{c.what} (failover: other servers answer)", c.fix)
            if c.status == "FAIL"
            else c
            for c in checks
        ]
    return checks


# -- OpenAI (premium, optional) -------------------------------------------------------


async def check_openai(settings: Settings) -> list[Check]:
    """The bot's premium client pings its endpoint (key accepted, PREMIUM_MODEL offered); any
    problem is a warning: premium is optional, local answers keep working and users are
    told premium failed."""
    model = build_openai(settings)
    if model is None:
        return [Check("OK", "openai", "premium is off (OPENAI_API_KEY is not set)")]
    shown = public_url((settings.openai_base_url or OPENAI_DEFAULT_BASE_URL).rstrip("/"))
    name = settings.premium_model
    try:
        await model.ping()
    except ProviderAuthFailed as exc:
        status = getattr(exc.__cause__, "status_code", "refused")
        return [
            Check(
                "WARN",
                "openai",
                f"{shown} refused OPENAI_API_KEY (HTTP {status}): premium answers would fail",
                "put a valid key in OPENAI_API_KEY (platform.openai.com/api-keys), "
                "or unset it to turn premium off",
            )
        ]
    except ModelNotFound:
        return [
            Check(
                "WARN",
                "openai",
                f"key accepted by {shown}, but PREMIUM_MODEL={name} is not offered",
                "set PREMIUM_MODEL to a model this key can use",
            )
        ]
    except ModelUnavailable as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "no answer"
        return [
            Check(
                "WARN",
                "openai",
                f"cannot reach {shown} ({cause}): premium answers would fail",
                "check that this machine reaches it (network, proxy, firewall) or correct "
                "OPENAI_BASE_URL; unset OPENAI_API_KEY to turn premium off",
            )
        ]
    return [Check("OK", "openai", f"key accepted by {shown}; {name} is available")]


# -- Slack ----------------------------------------------------------------------------


async def check_slack(settings: Settings) -> list[Check]:
    """auth.test with the bot token; the signing secret (HTTP) or app token (Socket Mode)."""
    token = settings.slack_bot_token
    if token is None:
        if settings.slack_app_token is not None or settings.slack_signing_secret is not None:
            return [
                Check(
                    "WARN",
                    "slack",
                    "Slack is off: SLACK_APP_TOKEN or SLACK_SIGNING_SECRET is set, "
                    "SLACK_BOT_TOKEN is not",
                    "put the Bot User OAuth Token (xoxb-...) in SLACK_BOT_TOKEN",
                )
            ]
        return [Check("OK", "slack", "Slack is off (SLACK_BOT_TOKEN is not set)")]
    shown = public_url(slack_api_url(settings))
    checks: list[Check] = []
    bot_token = token.get_secret_value()
    if not bot_token.startswith("xoxb-"):
        checks.append(
            Check(
                "WARN",
                "slack",
                "SLACK_BOT_TOKEN does not start with xoxb- (not a bot token)",
                "use the Bot User OAuth Token from OAuth & Permissions",
            )
        )
    client = build_slack_client(settings, timeout=int(TIMEOUT_SECONDS) + 2)  # the bot's own
    reinstall = (
        "copy the Bot User OAuth Token (xoxb-...) from OAuth & Permissions into "
        "SLACK_BOT_TOKEN (reinstall the app if it was revoked)"
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        checks.append(
            Check(
                "FAIL",
                "slack",
                f"auth.test at {shown} refused SLACK_BOT_TOKEN: {error}",
                reinstall if error in _SLACK_AUTH_ERRORS else "see api.slack.com/methods/auth.test",
            )
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        checks.append(
            Check(
                "FAIL",
                "slack",
                f"cannot reach Slack at {shown} ({type(exc).__name__})",
                "check that this machine reaches Slack (network, proxy) or correct SLACK_API_URL",
            )
        )
    else:
        checks.append(
            Check(
                "OK",
                "slack",
                f"auth.test ok: @{auth.get('user')} ({auth.get('user_id')}) in "
                f"{auth.get('team')} ({auth.get('team_id')})",
            )
        )
    checks.append(await _check_slack_mode(settings, client))
    return checks


async def _check_slack_mode(settings: Settings, client: AsyncWebClient) -> Check:
    app_token = settings.slack_app_token
    if app_token is None:
        if settings.slack_signing_secret is None:
            return Check(
                "FAIL",
                "slack",
                "HTTP mode without SLACK_SIGNING_SECRET: every request to /slack/events gets 401",
                "copy the Signing Secret (Basic Information) into SLACK_SIGNING_SECRET, "
                "or set SLACK_APP_TOKEN for Socket Mode",
            )
        secret = settings.slack_signing_secret.get_secret_value()
        if len(secret) < SLACK_SIGNING_SECRET_LENGTH:
            return Check(
                "WARN",
                "slack",
                f"HTTP mode, but SLACK_SIGNING_SECRET is {len(secret)} characters; Slack's are "
                f"{SLACK_SIGNING_SECRET_LENGTH}: every request to /slack/events will get 401",
                "copy the whole Signing Secret (Basic Information, App Credentials) into "
                "SLACK_SIGNING_SECRET",
            )
        return Check("OK", "slack", "HTTP mode: SLACK_SIGNING_SECRET is set")
    value = app_token.get_secret_value()
    new_token = (
        "create an app-level token with connections:write (Basic Information, App-Level "
        "Tokens) and put it in SLACK_APP_TOKEN, or unset it for HTTP mode"
    )
    if not value.startswith("xapp-"):
        return Check(
            "FAIL", "slack", "SLACK_APP_TOKEN does not start with xapp- (Socket Mode)", new_token
        )
    try:
        # Only hands out a WebSocket URL; nothing connects to it.
        await client.apps_connections_open(app_token=value)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        return Check("FAIL", "slack", f"Socket Mode refused SLACK_APP_TOKEN: {error}", new_token)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return Check(
            "WARN",
            "slack",
            f"Socket Mode: SLACK_APP_TOKEN not verified ({type(exc).__name__})",
            "check that this machine reaches Slack",
        )
    return Check("OK", "slack", "Socket Mode: SLACK_APP_TOKEN accepted")


# -- Teams ----------------------------------------------------------------------------


def check_teams(settings: Settings) -> list[Check]:
    """The Bot Framework credentials are complete for the app type (the problems the bot
    itself logs at start). Offline, doctor cannot fetch a token, so the credentials
    themselves are reported as not verified."""
    credentials = teams_credentials(settings)
    if not credentials.app_id:
        if settings.teams_allow_unauthenticated:
            return [
                Check(
                    "WARN",
                    "teams",
                    "TEAMS_ALLOW_UNAUTHENTICATED=true without MICROSOFT_APP_ID: unsigned "
                    "activities are accepted (replies only to loopback service URLs)",
                    "for local testing only; set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD "
                    "for real Teams",
                )
            ]
        return [Check("OK", "teams", "Teams is off (MICROSOFT_APP_ID is not set)")]
    checks = [
        Check("WARN" if p.severity == "odd" else "FAIL", "teams", p.what, p.fix)
        for p in credentials.problems()
    ]
    if not any(c.status == "FAIL" for c in checks):
        app_type = credentials.app_type
        credential = "managed identity" if app_type == "UserAssignedMSI" else "password set"
        checks.append(
            Check(
                "OK",
                "teams",
                f"app {credentials.app_id} ({app_type}, {credential}); credentials not verified: "
                "doctor does not fetch a Bot Framework token (a wrong secret shows as "
                "'cannot answer in Teams' in the bot's log)",
            )
        )
    return checks


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
    if settings.knowledge_sources.strip():  # team knowledge: adapters/knowledge_doctor.py
        from adapters.knowledge_doctor import check_knowledge

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


def exit_code(checks: Sequence[Check]) -> int:
    """1 when anything required failed, else 0 (warnings do not count)."""
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def render(checks: Sequence[Check]) -> str:
    """The report: one line per check, a fix under each problem, and a summary."""
    width = max((len(c.component) for c in checks), default=8)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.component:<{width}}  {c.what}")
        if c.fix and c.status != "OK":
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    failures = sum(c.status == "FAIL" for c in checks)
    warnings = sum(c.status == "WARN" for c in checks)
    if failures:
        summary = f"{failures} problem(s), {warnings} warning(s): the bot cannot work as configured"
    elif warnings:
        summary = f"everything required works; {warnings} warning(s)"
    else:
        summary = "everything works"
    # A last pass: nothing that looks like a secret leaves doctor.
    return _safe("\n".join([*lines, "", summary])) + "\n"


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
