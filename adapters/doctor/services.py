"""Checks of the services the bot needs: Redis, the database, Ollama, OpenAI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from redis.exceptions import AuthenticationError, RedisError
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from adapters.app.builders import (
    build_ollama,
    build_openai,
    build_redis,
)
from adapters.app.settings import Settings
from adapters.doctor.report import (
    CHECK_DEADLINE_SECONDS,
    OPENAI_DEFAULT_BASE_URL,
    TIMEOUT_SECONDS,
    Check,
)
from adapters.doctor.report import safe as _safe
from bot import database, keys
from bot.set_aside import SetAside, set_aside_jobs
from inference.base import ModelNotFound, ModelUnavailable, ProviderAuthFailed
from inference.ollama import OllamaChatModel
from inference.urls import public_url

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
