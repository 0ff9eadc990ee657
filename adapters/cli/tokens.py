"""`chatbot tokens create|list|revoke`: personal API tokens, for operators.

People make their own with `/token` in a DM with the bot; this is for scripts, service
accounts and cleaning up (a person who left: `chatbot tokens list --user U123`, then revoke).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from adapters.app.settings import Settings
from adapters.teams.ids import is_guid

if TYPE_CHECKING:
    from bot.tokens import TokenStore

DESCRIPTION = (
    "Personal tokens for the team API (editors, `chatbot ask`, MCP clients). A token acts as "
    "its owner: their premium access, budget, rate limit and ledger rows."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`tokens create|list|revoke` and their options."""
    sub = parser.add_subparsers(
        dest="tokens_command", required=True, metavar="{create,list,revoke}"
    )
    create = sub.add_parser(
        "create",
        help="make a token and print it once",
        description="Make a personal token for a user and print it (only this once).",
    )
    create.add_argument("--user", required=True, help="the owner: a Slack user id or Teams AAD id")
    create.add_argument(
        "--workspace", default="", help="the owner's Slack workspace (team) id or Teams tenant id"
    )
    create.add_argument(
        "--platform",
        choices=("slack", "teams"),
        default=None,
        help="default: teams for an AAD object id, else slack",
    )
    create.add_argument("--name", default="", help="a name to tell tokens apart (default token-N)")
    create.add_argument("--days", type=int, default=None, help="lifetime (default API_TOKEN_DAYS)")
    listing = sub.add_parser(
        "list",
        help="list tokens (never their secrets)",
        description="List tokens: owner, name, id, created, last used, expiry or state.",
    )
    listing.add_argument("--user", default=None, help="only this user's tokens")
    revoke = sub.add_parser(
        "revoke",
        help="revoke a token by its id (from `tokens list`)",
        description="Revoke a token at once: it gets 401 from then on.",
    )
    revoke.add_argument("token_id", metavar="TOKEN_ID", help="the id `chatbot tokens list` shows")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `chatbot tokens` command; its exit code."""
    # Imported here: the parser (and so every `chatbot` command) needs only the arguments.
    from bot import database
    from bot.database import DatabaseError
    from bot.tokens import TokenStore

    engine = database.create_engine(settings.effective_database_url)
    store = TokenStore(engine=engine, lifetime_days=settings.api_token_days)
    try:
        return await _run(store, args)
    except DatabaseError as exc:
        print(f"chatbot: {exc} (is the database migrated? `chatbot db upgrade`)", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


async def _run(store: TokenStore, args: argparse.Namespace) -> int:
    from bot.tokens import Owner, TokenError, describe

    now = datetime.now(UTC)
    if args.tokens_command == "create":
        if args.days is not None and not 1 <= args.days <= 3650:
            print("chatbot: --days must be from 1 to 3650", file=sys.stderr)
            return 2
        platform = args.platform or ("teams" if is_guid(args.user) else "slack")
        owner = Owner(platform, args.workspace, args.user)
        try:
            made = await store.create(owner, args.name, days=args.days)
        except TokenError as exc:
            print(f"chatbot: {exc}", file=sys.stderr)
            return 1
        print(made.secret)
        print(
            f"token {made.info.id} `{made.info.name}` for {platform} user {args.user}, "
            f"expires {made.info.expires_at:%Y-%m-%d}; shown only this once",
            file=sys.stderr,
        )
        return 0
    if args.tokens_command == "list":
        tokens = [t for t in await store.list() if args.user is None or t.owner.user == args.user]
        if not tokens:
            print("no tokens")
        for token, line in zip(tokens, describe(tokens, now), strict=True):
            owner = token.owner
            print(f"{owner.platform} {owner.workspace or '-'} {owner.user}  {line}")
        return 0
    if await store.revoke(id=args.token_id):
        print(f"revoked {args.token_id}")
        return 0
    print(f"chatbot: no active token with the id {args.token_id}", file=sys.stderr)
    return 1
