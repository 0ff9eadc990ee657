"""Personal API tokens: a person's key to the team API (editors, terminals, agents).

A token is ``cbt_`` and 32 random bytes; only its SHA-256 is stored (the token has 256 bits
of entropy, so a plain hash cannot be reversed or guessed). It acts as its owner (platform,
workspace or tenant, user): their premium permission, budget, rate limit and ledger rows.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Index, Select, String, UniqueConstraint, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from bot.database import Base, DatabaseError, translated_errors
from bot.ledger import UTCDateTime

PREFIX = "cbt_"
# "last used" is written at most this often per token, not on every request.
LAST_USED_EVERY = timedelta(minutes=1)
TIMEOUT_SECONDS = 5.0
MAX_NAME_CHARS = 64


class TokenRow(Base):
    """Table `api_tokens`: one personal token, by the hash of its secret."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(32))
    workspace: Mapped[str] = mapped_column(String(255))
    user: Mapped[str] = mapped_column("user_id", String(255))
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
        Index("ix_api_tokens_owner", "platform", "workspace", "user_id"),
    )


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a token acts as."""

    platform: str
    workspace: str
    user: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is shown of a token (never its secret)."""

    id: str
    owner: Owner
    name: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime
    revoked: bool

    def active(self, now: datetime) -> bool:
        """Not revoked and not expired at ``now``."""
        return not self.revoked and now < self.expires_at


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just made: the secret, shown once, and what is stored of it."""

    secret: str
    info: TokenInfo


class TokenError(Exception):
    """A token operation a person asked for cannot be done; the text says why."""


def hash_token(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    """Whether ``value`` has a token's shape (cheap check before any database call)."""
    return value.startswith(PREFIX) and 20 <= len(value) <= 200 and value.isascii()


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        owner=Owner(row.platform, row.workspace, row.user),
        name=row.name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
    )


class TokenStore:
    """Makes, lists, revokes and checks personal tokens (table `api_tokens`)."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        lifetime_days: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._lifetime = timedelta(days=lifetime_days)
        self._now = now

    async def create(self, owner: Owner, name: str = "", *, days: int | None = None) -> NewToken:
        """A new token for ``owner``; ``name`` must not be one of their active tokens'
        (empty: the next free "token-N")."""
        name = " ".join(name.split())[:MAX_NAME_CHARS]
        now = self._now()
        lifetime = timedelta(days=days) if days is not None else self._lifetime
        async with (
            translated_errors("could not make a token", TIMEOUT_SECONDS),
            self._sessions.begin() as session,
        ):
            taken = {
                info.name
                for info in map(_info, await session.scalars(_owned(owner)))
                if info.active(now)
            }
            if not name:
                free = (f"token-{n}" for n in range(1, len(taken) + 2))
                name = next(n for n in free if n not in taken)
            elif name in taken:
                raise TokenError(f"you already have a token named `{name}`")
            secret = PREFIX + secrets.token_urlsafe(32)
            row = TokenRow(
                id=secrets.token_hex(6),
                token_hash=hash_token(secret),
                platform=owner.platform,
                workspace=owner.workspace,
                user=owner.user,
                name=name,
                created_at=now,
                last_used_at=None,
                expires_at=now + lifetime,
                revoked_at=None,
            )
            session.add(row)
        return NewToken(secret=secret, info=_info(row))

    async def list(self, owner: Owner | None = None) -> list[TokenInfo]:
        """``owner``'s tokens (everyone's with None), newest first, revoked ones included."""
        query = select(TokenRow) if owner is None else _owned(owner)
        async with (
            translated_errors("could not read tokens", TIMEOUT_SECONDS),
            self._sessions() as session,
        ):
            rows = (await session.scalars(query.order_by(TokenRow.created_at.desc()))).all()
        return [_info(row) for row in rows]

    async def revoke(self, *, owner: Owner | None = None, name: str = "", id: str = "") -> int:
        """Revoke ``owner``'s active tokens named ``name``, or the token ``id``: how many."""
        now = self._now()
        query = update(TokenRow).where(TokenRow.revoked_at.is_(None)).values(revoked_at=now)
        if id:
            query = query.where(TokenRow.id == id)
        elif owner is not None and name:
            query = query.where(
                TokenRow.platform == owner.platform,
                TokenRow.workspace == owner.workspace,
                TokenRow.user == owner.user,
                TokenRow.name == name,
            )
        else:
            return 0
        async with (
            translated_errors("could not revoke a token", TIMEOUT_SECONDS),
            self._sessions.begin() as session,
        ):
            result = await session.execute(query)
        return int(getattr(result, "rowcount", 0) or 0)

    async def authenticate(self, secret: str) -> Owner | None:
        """The owner of an active token; None for an unknown, expired or revoked one.
        Notes when it was used, at most once a minute."""
        if not looks_like_token(secret):
            return None
        now = self._now()
        digest = hash_token(secret)
        async with (
            translated_errors("could not check a token", TIMEOUT_SECONDS),
            self._sessions() as session,
        ):
            row = await session.scalar(select(TokenRow).where(TokenRow.token_hash == digest))
            if row is None:
                return None
            info = _info(row)
            if not info.active(now):
                return None
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
                await session.execute(
                    update(TokenRow).where(TokenRow.id == row.id).values(last_used_at=now)
                )
                await session.commit()
        return info.owner


def _owned(owner: Owner) -> Select[TokenRow]:
    return select(TokenRow).where(
        TokenRow.platform == owner.platform,
        TokenRow.workspace == owner.workspace,
        TokenRow.user == owner.user,
    )


def describe(tokens: Sequence[TokenInfo], now: datetime) -> list[str]:
    """One line per token: name, created, last used, expiry or state (never the secret)."""
    lines = []
    for token in tokens:
        state = (
            "revoked"
            if token.revoked
            else f"expired {token.expires_at:%Y-%m-%d}"
            if now >= token.expires_at
            else f"expires {token.expires_at:%Y-%m-%d}"
        )
        used = f"{token.last_used_at:%Y-%m-%d %H:%M} UTC" if token.last_used_at else "never"
        lines.append(
            f"`{token.name}` (id {token.id}): created {token.created_at:%Y-%m-%d}, "
            f"last used {used}, {state}"
        )
    return lines


TOKEN_ONLY_IN_DM = (
    "Personal tokens are made only in a direct message with me, so that nobody else sees "
    "them: open a DM with me and send `/token` there. Nothing was made."
)
TOKENS_OFF = "Personal tokens are not available on this bot (its database is not reachable)."
TOKEN_MADE = (
    "Your personal token `{name}` (expires {expires:%Y-%m-%d}); it is shown only this once:\n"
    "```\n{secret}\n```\n"
    "It acts as you: your premium access, budget and rate limit. Use it as the API key of any "
    "tool that speaks OpenAI's API (base URL `{api}/v1`), or for `chatbot ask` "
    "(`CHATBOT_URL={api}`, `CHATBOT_TOKEN=` the token) and MCP clients (`{api}/mcp`). "
    "`/token list` shows your tokens, `/token revoke {name}` revokes this one."
)
TOKEN_USAGE = "Usage: `/token [NAME]`, `/token list`, `/token revoke NAME`."


class TokenCommand:
    """`/token [NAME]`, `/token list`, `/token revoke NAME`: a person's own tokens, in the
    direct message with the bot only."""

    def __init__(self, *, store: TokenStore, api_url: str) -> None:
        self._store = store
        self._api = api_url.rstrip("/")

    async def reply(self, owner: Owner, argument: str, *, is_direct: bool) -> str:
        """What to answer ``owner``'s `/token` with ``argument``."""
        if not is_direct:
            return TOKEN_ONLY_IN_DM
        verb, _, rest = argument.strip().partition(" ")
        rest = rest.strip()
        try:
            if verb.lower() == "list" and not rest:
                tokens = await self._store.list(owner)
                if not tokens:
                    return "You have no tokens. `/token` makes one."
                now = datetime.now(UTC)
                return "Your tokens:\n" + "\n".join(f"- {line}" for line in describe(tokens, now))
            if verb.lower() == "revoke":
                if not rest:
                    return TOKEN_USAGE
                if await self._store.revoke(owner=owner, name=rest):
                    return f"Revoked `{rest}`: it no longer works."
                return f"You have no active token named `{rest}` (`/token list` shows them)."
            made = await self._store.create(owner, argument)
        except TokenError as exc:
            return f"{exc}. Choose another name, or revoke it first with `/token revoke NAME`."
        except DatabaseError:
            return TOKENS_OFF
        return TOKEN_MADE.format(
            name=made.info.name, expires=made.info.expires_at, secret=made.secret, api=self._api
        )
