"""Sign-in to the analytics page: `/admin` in a direct message gives an admin a one-time
link; the link gives them a signed session.

A code is random, valid ``CODE_TTL_SECONDS`` and used once; only its SHA-256 digest is
stored (in Redis, or in the database without Redis), so reading the store does not sign
anyone in. A session is a value signed with HMAC-SHA256 under a key kept in the same store
(made once, shared by every process and replica): ``user.expiry.signature``. Whoever is
removed from ``ADMIN_USERS`` loses their session at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy import String, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot import keys, replies
from bot.database import Base, DatabaseError, translated_errors
from bot.errors import StateUnavailable
from bot.ledger import UTCDateTime
from bot.redis_errors import translated_redis_errors

log = logging.getLogger(__name__)

CODE_TTL_SECONDS = 600
SESSION_SECONDS = 12 * 3600
DATABASE_TIMEOUT_SECONDS = 5.0
_KEY_NAME = "session-key"


class AdminCodeRow(Base):
    """Table `admin_codes`: one-time sign-in codes, by digest, until used or expired."""

    __tablename__ = "admin_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column("user_id", String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AdminSecretRow(Base):
    """Table `admin_secrets`: the key signing session cookies (made once)."""

    __tablename__ = "admin_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class SignInStore(Protocol):
    """Where codes and the session key live; failures raise StateUnavailable or
    DatabaseError."""

    async def put_code(self, digest: str, user: str, expires_at: datetime) -> None:
        """Keep a code's digest for ``user`` until ``expires_at``."""
        ...

    async def take_code(self, digest: str, now: datetime) -> str | None:
        """The user of an unexpired code, removing it (a second take finds nothing)."""
        ...

    async def session_key(self) -> bytes:
        """The key signing sessions, made by the first process that asks."""
        ...


class RedisSignInStore:
    """Codes and the session key in Redis (codes expire there by themselves)."""

    def __init__(self, *, redis: Redis) -> None:
        self._redis = redis

    async def put_code(self, digest: str, user: str, expires_at: datetime) -> None:
        """Keep a code's digest for ``user`` until ``expires_at``."""
        seconds = max(1, int((expires_at - datetime.now(UTC)).total_seconds()))
        with translated_redis_errors("storing a sign-in code"):
            await self._redis.set(keys.admin_code(digest), user, ex=seconds)

    async def take_code(self, digest: str, now: datetime) -> str | None:
        """The user of an unexpired code, removing it atomically (GETDEL)."""
        with translated_redis_errors("reading a sign-in code"):
            value = await self._redis.getdel(keys.admin_code(digest))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def session_key(self) -> bytes:
        """The key signing sessions (SET NX: the first process's key wins)."""
        with translated_redis_errors("reading the session key"):
            await self._redis.set(keys.admin_session_key(), secrets.token_hex(32), nx=True)
            value = await self._redis.get(keys.admin_session_key())
        text = value.decode() if isinstance(value, bytes) else str(value)
        return bytes.fromhex(text)


class DatabaseSignInStore:
    """Codes and the session key in the database (a bot without Redis)."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put_code(self, digest: str, user: str, expires_at: datetime) -> None:
        """Keep a code's digest for ``user`` until ``expires_at``; drop expired codes."""
        async with (
            translated_errors("could not store a sign-in code", DATABASE_TIMEOUT_SECONDS),
            self._engine.begin() as connection,
        ):
            await connection.execute(
                delete(AdminCodeRow).where(AdminCodeRow.expires_at < datetime.now(UTC))
            )
            await connection.execute(
                insert(AdminCodeRow).values(code_hash=digest, user_id=user, expires_at=expires_at)
            )

    async def take_code(self, digest: str, now: datetime) -> str | None:
        """The user of an unexpired code, deleting it in the same statement: of two
        requests with one code, only one gets the row back."""
        statement = (
            delete(AdminCodeRow)
            .where(AdminCodeRow.code_hash == digest)
            .returning(AdminCodeRow.user, AdminCodeRow.expires_at)
        )
        async with (
            translated_errors("could not read a sign-in code", DATABASE_TIMEOUT_SECONDS),
            self._engine.begin() as connection,
        ):
            row = (await connection.execute(statement)).first()
        if row is None:
            return None
        user, expires_at = row
        return None if expires_at <= now else str(user)

    async def session_key(self) -> bytes:
        """The key signing sessions; the first process to insert it wins."""
        query = select(AdminSecretRow.value).where(AdminSecretRow.name == _KEY_NAME)
        async with translated_errors("could not read the session key", DATABASE_TIMEOUT_SECONDS):
            async with self._engine.connect() as connection:
                value = await connection.scalar(query)
            if value is None:
                try:
                    async with self._engine.begin() as connection:
                        await connection.execute(
                            insert(AdminSecretRow).values(
                                name=_KEY_NAME, value=secrets.token_hex(32)
                            )
                        )
                except IntegrityError:
                    pass  # another process made it first: use theirs
                async with self._engine.connect() as connection:
                    value = await connection.scalar(query)
        if value is None:
            raise DatabaseError("could not read the session key: it was not stored")
        return bytes.fromhex(value)


def digest_of(code: str) -> str:
    """What is stored of a code: its SHA-256, in hex."""
    return hashlib.sha256(code.encode()).hexdigest()


class AdminSignIn:
    """Who the admins are, their one-time sign-in codes and their signed sessions."""

    def __init__(
        self,
        *,
        admins: frozenset[str],
        store: SignInStore,
        public_url: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._admins = admins
        self._store = store
        self._public_url = public_url.rstrip("/")
        self._now = now
        self._key: bytes | None = None

    def is_admin(self, user: str) -> bool:
        """Whether ``user`` (a platform user id) is listed in ADMIN_USERS."""
        return bool(user) and user in self._admins

    async def reply_to(self, user: str, *, direct: bool) -> str:
        """The answer to `/admin` from ``user``: a sign-in link for an admin in a direct
        message, else why not."""
        if not self._admins:
            return replies.ADMIN_NOT_SET_UP
        if not self.is_admin(user):
            return replies.ADMIN_ONLY
        if not direct:
            return replies.ADMIN_DIRECT_ONLY
        try:
            code = await self.issue_code(user)
        except (StateUnavailable, DatabaseError):
            log.warning("cannot store an analytics sign-in code", exc_info=True)
            return replies.ADMIN_UNAVAILABLE
        url = f"{self._public_url}/admin/login?code={code}"
        return replies.ADMIN_LINK.format(minutes=CODE_TTL_SECONDS // 60, url=url)

    async def issue_code(self, user: str) -> str:
        """A new one-time code for ``user`` (an admin)."""
        code = secrets.token_urlsafe(32)
        expires = self._now() + timedelta(seconds=CODE_TTL_SECONDS)
        await self._store.put_code(digest_of(code), user, expires)
        log.info("issued an analytics sign-in link")
        return code

    async def redeem(self, code: str) -> str | None:
        """The admin a valid, unused, unexpired ``code`` belongs to (using it up), or None."""
        if not code or len(code) > 256:
            return None
        user = await self._store.take_code(digest_of(code), self._now())
        return user if user is not None and self.is_admin(user) else None

    async def _signing_key(self) -> bytes:
        if self._key is None:
            self._key = await self._store.session_key()
        return self._key

    async def new_session(self, user: str) -> str:
        """A session value for ``user``, valid ``SESSION_SECONDS``."""
        expires = int(self._now().timestamp()) + SESSION_SECONDS
        name = base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")
        payload = f"{name}.{expires}"
        return f"{payload}.{await self._sign(payload)}"

    async def session_user(self, value: str) -> str | None:
        """The admin a session value was signed for, when it is genuine, unexpired and they
        are still an admin; else None."""
        name, _, rest = value.partition(".")
        expires, _, signature = rest.partition(".")
        if not (name and expires.isdigit() and signature) or len(value) > 1024:
            return None
        expected = await self._sign(f"{name}.{expires}")
        if not hmac.compare_digest(expected, signature):
            return None
        if int(expires) <= self._now().timestamp():
            return None
        try:
            user = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user if self.is_admin(user) else None

    async def _sign(self, payload: str) -> str:
        key = await self._signing_key()
        return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
