"""The `chatbot` console script."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from adapters.app import logs
from adapters.app.settings import Settings, data_dir, describe_errors, settings_source
from adapters.cli import ask as ask_cli
from adapters.cli import tokens as tokens_cli
from adapters.teams import package as teams_package

DESCRIPTIONS = {
    "serve": (
        "Run the bot: Slack (Socket Mode when SLACK_APP_TOKEN is set, else POST /slack/events), "
        "Teams (POST /api/messages) and the health routes /healthz, /readyz, /metrics. "
        "Stops cleanly on Ctrl-C or SIGTERM, finishing answers in flight."
    ),
    "chat": (
        "Talk to the bot in this terminal through the same core (memory, commands, models); "
        "no Slack or Teams needed. /help lists the commands, /quit or Ctrl-D ends."
    ),
    "doctor": (
        "Check the configuration and every dependency (Redis, database, Ollama and its model, "
        "OpenAI key, Slack, Teams) and say how to fix what is wrong. Exit 0 when everything "
        "required works, 1 otherwise."
    ),
    "db": "Database tasks.",
    "upgrade": "Apply the database migrations (creates the tables on a new database).",
    "usage": "Requests, tokens, cost, latency and feedback votes from the usage ledger.",
    "index": (
        "Index the team knowledge sources (KNOWLEDGE_SOURCES) now, instead of waiting for "
        "`chatbot serve`'s next refresh; only what changed is embedded again."
    ),
    "sources": "List the team knowledge sources and when each was last indexed.",
    "teams-package": (
        "Write the Teams app package (manifest.json and icons, zipped) to upload in Teams."
    ),
}


def _version() -> str:
    try:
        return version("chatbot")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatbot",
        description="Self-hosted AI assistant for engineering teams in Slack and Microsoft Teams.",
        epilog="New here? `chatbot doctor` checks the setup, `chatbot chat` tries the bot.",
    )
    parser.add_argument("--version", action="version", version=f"chatbot {_version()}")
    # Not required: `chatbot` alone prints this help (main()).
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=DESCRIPTIONS[name])

    serve = command("serve", "run the bot (Slack, Teams, health routes)")
    serve.add_argument(
        "--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0, every one)"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="default: $PORT or 3000; 0: any free port"
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="processes sharing the work (default: the number of cores, at most 4; "
        "1 without Redis)",
    )
    command("chat", "talk to the bot in this terminal")
    command("doctor", "check the configuration and every dependency")
    db = command("db", "database tasks (chatbot db upgrade)")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="{upgrade}")
    db_sub.add_parser(
        "upgrade", help="apply database migrations", description=DESCRIPTIONS["upgrade"]
    )
    usage = command(
        "usage", "requests, tokens, cost, latency and feedback votes from the usage ledger"
    )
    usage.add_argument(
        "--since", default="30d", help="window: 30d, 24h, 2w, 90m or a date 2025-11-01 (UTC)"
    )
    usage.add_argument(
        "--by",
        choices=("user", "workspace", "model"),
        default="user",
        help="one row per user, workspace or model (default: user)",
    )
    index = command("index", "index the team knowledge sources now")
    index.add_argument("--full", action="store_true", help="re-embed every document")
    index.add_argument("sources", nargs="*", metavar="SOURCE", help="default: every source")
    command("sources", "list the knowledge sources and when they were indexed")
    teams_package.add_arguments(
        command("teams-package", "write the Teams app package (zip) to upload")
    )
    tokens_cli.add_arguments(
        sub.add_parser(
            "tokens",
            help="personal API tokens: create, list, revoke",
            description=tokens_cli.DESCRIPTION,
        )
    )
    ask_cli.add_arguments(
        sub.add_parser(
            "ask", help="ask a running bot from this terminal", description=ask_cli.DESCRIPTION
        )
    )
    return parser


def chat_log_path() -> Path:
    """Where `chatbot chat` logs while stderr is the chat's own terminal."""
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "chat.log"


def load_settings() -> Settings | None:
    """The settings, or None after printing what is wrong the way `chatbot doctor` words it."""
    try:
        return Settings()
    except Exception as exc:  # ValidationError, or pydantic-settings' SettingsError
        source = settings_source()
        print(f"chatbot: invalid configuration (read from the {source}):", file=sys.stderr)
        for line in describe_errors(exc):
            print(f"  {logs.redacted(line)}", file=sys.stderr)
        print("Correct it (see .env.example); `chatbot doctor` checks everything.", file=sys.stderr)
        return None


async def _chat(settings: Settings, *, log_path: Path | None) -> None:
    from adapters.app.server import build, migrate
    from adapters.console.chat import run_chat

    await migrate(settings)
    runtime = await build(settings)
    notes = [
        f"model: {settings.ollama_model} at {', '.join(settings.ollama_urls)}",
        "memory: Redis"
        if runtime.memory_backend == "redis"
        else "memory: in this process only (no Redis answers), lost when the chat ends",
    ]
    if log_path is not None:
        notes.append(f"log: {log_path}")
    try:
        await run_chat(runtime.assistant, notes=notes, history=data_dir() / "chat_history")
    finally:
        # Drain what the answers left behind (usage rows) before the ledger closes.
        await runtime.settle(timeout=settings.shutdown_grace_seconds)
        await runtime.close()


async def _usage(settings: Settings, *, since: str, by: str) -> int:
    from datetime import UTC, datetime

    from bot import database
    from bot.usage_report import (
        GROUPINGS,
        feedback_report,
        format_feedback,
        format_report,
        parse_since,
        usage_report,
    )

    group = next(g for g in GROUPINGS if g == by)  # argparse already checked the choice

    try:
        start = parse_since(since, datetime.now(UTC))
    except ValueError as exc:
        print(f"chatbot: {exc}", file=sys.stderr)
        return 2
    url = settings.effective_database_url
    try:
        engine = database.create_engine(url)
    except database.DatabaseError as exc:
        print(f"chatbot: {exc}", file=sys.stderr)
        return 1
    try:
        lines = await usage_report(engine, since=start, by=group)
        feedback = await feedback_report(engine, since=start)
    except database.DatabaseError as exc:
        print(
            f"chatbot: {exc} ({database.redact_url(url)}; `chatbot db upgrade` creates the tables)",
            file=sys.stderr,
        )
        return 1
    finally:
        await engine.dispose()
    print(f"Usage since {start:%Y-%m-%d %H:%M} UTC, by {by}:")
    print(format_report(lines, by=group))
    print()
    print("Feedback votes on answers, by model and route:")
    print(format_feedback(feedback))
    return 0


def _serve(settings: Settings, *, host: str, port: int, workers: int | None) -> int:
    # What start-up imports and builds lives as long as the process: the collector's passes
    # over it while it grows (three full ones, dozens of partial) free nothing and cost a
    # fifth of start-up's CPU. Paused until the bot is up (serve() turns it back on, with
    # start-up's objects frozen out of its passes): Python's advice for a process that forks.
    gc.disable()
    import logging

    from adapters.app.builders import redis_expected
    from adapters.app.server import StartupError, serve
    from adapters.app.workers import default_workers, run_workers
    from adapters.doctor import first_steps
    from inference.knowledge import is_embedded_store

    count = workers or default_workers()
    log = logging.getLogger("adapters.cli")
    if count > 1 and not redis_expected(settings):
        if workers is not None:
            log.warning(
                "--workers %d needs Redis (REDIS_URL) to share the work: running one process",
                workers,
            )
        count = 1
    if (
        count > 1
        and settings.knowledge_sources.strip()
        and is_embedded_store(settings.knowledge_store)
    ):
        # Every worker answers from the index, and the embedded store opens in one process.
        log.log(
            logging.WARNING if workers is not None else logging.INFO,
            "the embedded knowledge store (KNOWLEDGE_STORE=%s) opens in one process: running "
            "one; set KNOWLEDGE_STORE to a Qdrant server URL for more workers",
            settings.knowledge_store,
        )
        count = 1
    try:
        if count > 1:
            return run_workers(settings, host=host, port=port, workers=count, advise=first_steps)
        asyncio.run(serve(settings, host=host, port=port, advise=first_steps))
    except StartupError as exc:
        print(f"chatbot: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"chatbot: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments, load settings, run the command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `chatbot` alone: what it can do, not an error
        parser.print_help()
        return 0
    if args.command == "doctor":  # reports bad settings itself, with the other checks
        from adapters.doctor import main as doctor

        return doctor()
    if args.command == "ask":  # a client: none of the server's settings
        return ask_cli.main(args)
    settings = load_settings()
    if settings is None:
        return 2
    level = settings.log_level
    log_path = None
    if args.command == "chat":
        if "LOG_LEVEL" not in os.environ:
            level = "WARNING"  # the terminal is the conversation: keep routine lines out of it
        if sys.stderr.isatty():  # stderr is that terminal too: log lines would cut answers
            log_path = chat_log_path()
    logs.configure(level, settings.log_format, path=log_path)
    if args.command == "serve":
        return _serve(
            settings,
            host=args.host,
            port=settings.port if args.port is None else args.port,  # 0: any free port
            workers=args.workers,
        )
    if args.command == "chat":
        from adapters.app.server import StartupError

        try:
            asyncio.run(_chat(settings, log_path=log_path))
        except StartupError as exc:
            print(f"chatbot: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # Ctrl-C: the chat ends (the terminal already shows ^C)
            print()
        return 0
    if args.command == "teams-package":
        return teams_package.run(
            args,
            app_id=settings.microsoft_app_id,
            suggested=settings.suggested_prompts,
            # Knowledge sources, when this version has them (KNOWLEDGE_SOURCES).
            knowledge=bool(getattr(settings, "knowledge_sources", "")),
        )
    if args.command == "tokens":
        return asyncio.run(tokens_cli.run(settings, args))
    if args.command == "usage":
        return asyncio.run(_usage(settings, since=args.since, by=args.by))
    if args.command in ("index", "sources"):
        from adapters.cli import knowledge as knowledge_cli

        if args.command == "index":
            try:
                return asyncio.run(knowledge_cli.run_index(settings, args.sources, full=args.full))
            except KeyboardInterrupt:  # Ctrl-C: one line, no traceback
                print(f"\n{knowledge_cli.INTERRUPTED}", file=sys.stderr)
                return 130
        return asyncio.run(knowledge_cli.run_sources(settings))
    if args.command == "db" and args.db_command == "upgrade":
        from bot import database

        try:
            database.upgrade(settings.effective_database_url)
        except Exception as exc:
            print(f"chatbot: {logs.redacted(str(exc))}", file=sys.stderr)
            return 1
        print(f"database is up to date ({database.redact_url(settings.effective_database_url)})")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
