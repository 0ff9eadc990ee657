"""The `chatbot` console script."""

from __future__ import annotations

import argparse
import asyncio
import sys

from adapters import logs
from adapters.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatbot", description="Self-hosted AI assistant")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the bot (Slack, Teams, health routes)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=None, help="default: $PORT or 3000")
    sub.add_parser("chat", help="talk to the bot in this terminal")
    db = sub.add_parser("db", help="database tasks")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply database migrations")
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse arguments, load settings, run the command."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's message names the bad variable and why
        print(f"chatbot: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
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
