"""The `chatbot` console script."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from adapters import logs
from adapters.settings import Settings
from adapters.teams import package as teams_package


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatbot", description="Self-hosted AI assistant")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the bot (Slack, Teams, health routes)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=None, help="default: $PORT or 3000")
    sub.add_parser("chat", help="talk to the bot in this terminal")
    sub.add_parser("doctor", help="check the configuration and every dependency")
    db = sub.add_parser("db", help="database tasks")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply database migrations")
    usage = sub.add_parser("usage", help="requests, tokens, cost and latency from the usage ledger")
    usage.add_argument(
        "--since", default="30d", help="window: 30d, 24h, 2w, 90m or a date 2025-11-01 (UTC)"
    )
    usage.add_argument("--by", choices=("user", "workspace", "model"), default="user")
    index = sub.add_parser("index", help="index the team knowledge sources now")
    index.add_argument("--full", action="store_true", help="re-embed every document")
    index.add_argument("sources", nargs="*", metavar="SOURCE", help="default: every source")
    sub.add_parser("sources", help="list the knowledge sources and when they were indexed")
    teams_package.add_arguments(
        sub.add_parser("teams-package", help="write the Teams app package (zip) to upload")
    )
    return parser


async def _chat(settings: Settings) -> None:
    from adapters.console.chat import run_chat
    from adapters.server import migrate
    from adapters.wiring import build_runtime

    await migrate(settings)
    runtime = await build_runtime(settings)
    try:
        await run_chat(runtime.assistant)
    finally:
        await runtime.close()


async def _usage(settings: Settings, *, since: str, by: str) -> int:
    from datetime import UTC, datetime

    from bot import database
    from bot.usage_report import GROUPINGS, format_report, parse_since, usage_report

    group = next(g for g in GROUPINGS if g == by)  # argparse already checked the choice

    try:
        start = parse_since(since, datetime.now(UTC))
    except ValueError as exc:
        print(f"chatbot: {exc}", file=sys.stderr)
        return 2
    engine = database.create_engine(settings.database_url)
    try:
        lines = await usage_report(engine, since=start, by=group)
    except database.DatabaseError as exc:
        print(
            f"chatbot: {exc} ({database.redact_url(settings.database_url)}; "
            "`chatbot db upgrade` creates the tables)",
            file=sys.stderr,
        )
        return 1
    finally:
        await engine.dispose()
    print(f"Usage since {start:%Y-%m-%d %H:%M} UTC, by {by}:")
    print(format_report(lines, by=group))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments, load settings, run the command."""
    args = _parser().parse_args(argv)
    if args.command == "doctor":  # reports bad settings itself, with the other checks
        from adapters.doctor import main as doctor

        return doctor()
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's message names the bad variable and why
        print(f"chatbot: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    level = settings.log_level
    if args.command == "chat" and "LOG_LEVEL" not in os.environ:
        level = "WARNING"  # the terminal is the conversation: keep routine lines out of it
    logs.configure(level, settings.log_format)
    if args.command == "serve":
        from adapters.server import serve

        try:
            asyncio.run(serve(settings, host=args.host, port=args.port or settings.port))
        except OSError as exc:
            print(f"chatbot: cannot listen: {exc.strerror}", file=sys.stderr)
            return 1
        return 0
    if args.command == "chat":
        try:
            asyncio.run(_chat(settings))
        except KeyboardInterrupt:
            pass
        return 0
    if args.command == "teams-package":
        return teams_package.run(args, app_id=settings.microsoft_app_id)
    if args.command == "usage":
        return asyncio.run(_usage(settings, since=args.since, by=args.by))
    if args.command in ("index", "sources"):
        from adapters import knowledge_cli

        if args.command == "index":
            return asyncio.run(knowledge_cli.run_index(settings, args.sources, full=args.full))
        return asyncio.run(knowledge_cli.run_sources(settings))
    if args.command == "db" and args.db_command == "upgrade":
        from bot import database

        try:
            database.upgrade(settings.database_url)
        except Exception as exc:
            print(f"chatbot: migration failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print("database is up to date")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
