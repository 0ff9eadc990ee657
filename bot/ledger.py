"""The usage ledger: one database row per answered (or failed) question, and the votes
people gave the answers (one per person per answer)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    case,
    func,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from bot.budget import Spend
from bot.database import Base, translated_errors
from bot.rollups import add_records
from bot.usage import UsageRecord
from bot.votes import Vote

PING_TIMEOUT_SECONDS = 3.0
DEFAULT_TIMEOUT_SECONDS = 10.0


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; read back as UTC on every backend.

    SQLite has no time zone type: values are stored as naive UTC there.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class RequestRow(Base):
    """Table `requests`: the stored form of a UsageRecord."""

    __tablename__ = "requests"

    # BIGINT on servers; SQLite only auto-increments a column typed exactly INTEGER.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    platform: Mapped[str] = mapped_column(String(32))
    workspace: Mapped[str] = mapped_column(String(255))
    # Not "user": that is a reserved word in PostgreSQL (a bare `user` in SQL is the
    # session's role), a trap for anyone writing reports by hand.
    user: Mapped[str] = mapped_column("user_id", String(255))
    conversation: Mapped[str] = mapped_column(String(1024))
    route: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(255))
    prompt_tokens: Mapped[int] = mapped_column(Integer())
    completion_tokens: Mapped[int] = mapped_column(Integer())
    latency_ms: Mapped[int] = mapped_column(Integer())
    first_token_ms: Mapped[int | None] = mapped_column(Integer())
    outcome: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Exact decimal storage on every backend, read back as float (dollars).
    cost_usd: Mapped[float] = mapped_column(
        Numeric(14, 8, asdecimal=False), server_default=text("0")
    )
    # Team knowledge: passages given to the model, and the time retrieval took.
    passages: Mapped[int] = mapped_column(Integer(), server_default=text("0"))
    retrieval_ms: Mapped[int | None] = mapped_column(Integer())
    # What feedback on the answer names (votes.answer_id); NULL on rows older than votes.
    answer_id: Mapped[str | None] = mapped_column(String(64))
    # The door a question came through when not the platform's chat ("api", "mcp").
    via: Mapped[str | None] = mapped_column(String(16))
    # For the analytics page (NULL on older rows): the channel (Slack) or conversation
    # (Teams) asked in; what retrieval found (bot.retrieval.KnowledgeFound; NULL without
    # retrieval); the question, redacted, kept only with ANALYTICS_SHOW_QUESTIONS=true.
    # What the page adds up is kept in daily summaries too (bot.rollups).
    channel: Mapped[str | None] = mapped_column(String(255))
    knowledge: Mapped[str | None] = mapped_column(String(16))
    question: Mapped[str | None] = mapped_column(Text())

    __table_args__ = (
        Index("ix_requests_created_at", "created_at"),
        Index("ix_requests_answer_id", "answer_id"),
        # For monthly budgets per user and per workspace.
        Index("ix_requests_user_id_created_at", "user_id", "created_at"),
        Index("ix_requests_workspace_created_at", "workspace", "created_at"),
    )


class VoteRow(Base):
    """Table `votes`: one person's latest vote on one answer."""

    __tablename__ = "votes"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    answer_id: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(32))
    workspace: Mapped[str] = mapped_column(String(255))
    user: Mapped[str] = mapped_column("user_id", String(255))
    vote: Mapped[str] = mapped_column(String(8))  # "up" or "down"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The answer's model and route (requests.model, .route), for the analytics page.
    model: Mapped[str | None] = mapped_column(String(255))
    route: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_votes_created_at", "created_at"),  # the analytics page's window
        # One vote per person per answer: a later one replaces it (upsert on this).
        UniqueConstraint("answer_id", "platform", "user_id"),
    )


class AnswerMessageRow(Base):
    """Table `answer_messages`: which answer a posted platform message belongs to, for
    platforms whose feedback names the message rather than the answer (Teams)."""

    __tablename__ = "answer_messages"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    platform: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(1024))
    answer_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("platform", "message"),)


def _to_values(record: UsageRecord) -> dict[str, Any]:
    """A record as the `requests` row's attribute values (for a bulk insert)."""
    return dict(
        platform=record.platform,
        workspace=record.workspace,
        user=record.user,
        conversation=record.conversation,
        route=record.route,
        model=record.model,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        latency_ms=record.latency_ms,
        first_token_ms=record.first_token_ms,
        outcome=record.outcome,
        created_at=record.created_at,
        cost_usd=record.cost_usd,
        passages=record.passages,
        retrieval_ms=record.retrieval_ms,
        answer_id=record.answer_id or None,
        via=record.via or None,
        channel=record.channel or None,
        knowledge=record.knowledge,
        question=record.question,
    )


class Ledger:
    """Stores usage records in the `requests` table."""

    def __init__(
        self, *, engine: AsyncEngine, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._timeout = timeout_seconds

    async def record(self, record: UsageRecord) -> None:
        """Store one usage record."""
        await self.record_many([record])

    async def record_many(self, records: Sequence[UsageRecord]) -> None:
        """Store several usage records in one transaction."""
        async with (
            translated_errors("could not record usage", self._timeout),
            self._sessions.begin() as session,
        ):
            # An ORM bulk INSERT: one statement run for every row, no objects to track.
            await session.execute(insert(RequestRow), [_to_values(r) for r in records])
            await add_records(session, records)

    async def ping(self) -> None:
        """Check that the database answers; raise DatabaseError when it does not."""
        async with (
            translated_errors("database is down", PING_TIMEOUT_SECONDS),
            self._engine.connect() as connection,
        ):
            await connection.execute(text("SELECT 1"))

    async def spend_since(self, *, user: str, workspace: str, since: datetime) -> Spend:
        """What ``user`` (anywhere) and ``workspace`` (anyone in it) spent since ``since``."""
        query = select(
            func.coalesce(func.sum(case((RequestRow.user == user, RequestRow.cost_usd))), 0),
            func.coalesce(
                func.sum(case((RequestRow.workspace == workspace, RequestRow.cost_usd))), 0
            ),
        ).where(
            RequestRow.created_at >= since,
            or_(RequestRow.user == user, RequestRow.workspace == workspace),
        )
        async with (
            translated_errors("could not read spend", self._timeout),
            self._sessions() as session,
        ):
            user_usd, workspace_usd = (await session.execute(query)).one()
        return Spend(user_usd=float(user_usd), workspace_usd=float(workspace_usd))

    async def record_vote(self, vote: Vote) -> None:
        """Store ``vote``, replacing the same person's earlier vote on the same answer."""
        values: dict[str, Any] = {
            "answer_id": vote.answer_id,
            "platform": vote.platform,
            "workspace": vote.workspace,
            "user_id": vote.user,
            "vote": vote.value,
            "created_at": vote.created_at,
        }
        # The answer's model and route, kept with the vote for the analytics page (NULL
        # when its ledger row is not written yet: the page then looks it up).
        answer = (
            select(RequestRow.model, RequestRow.route)
            .where(RequestRow.answer_id == vote.answer_id)
            .limit(1)
        )
        async with (
            translated_errors("could not record a vote", self._timeout),
            self._sessions.begin() as session,
        ):
            found = (await session.execute(answer)).first()
            values["model"], values["route"] = found if found is not None else (None, None)
            await _upsert(
                session, VoteRow, [values], keys=("answer_id", "platform", "user_id"),
                changed=("vote", "created_at", "model", "route"),
            )  # fmt: skip

    async def link_messages(
        self, *, platform: str, messages: Sequence[str], answer_id: str, at: datetime
    ) -> None:
        """Remember that ``messages`` (platform message ids) show the answer ``answer_id``."""
        if not messages:
            return
        rows = [
            {"platform": platform, "message": message, "answer_id": answer_id, "created_at": at}
            for message in dict.fromkeys(messages)
        ]
        async with (
            translated_errors("could not link an answer's messages", self._timeout),
            self._sessions.begin() as session,
        ):
            await _upsert(
                session, AnswerMessageRow, rows, keys=("platform", "message"),
                changed=("answer_id", "created_at"),
            )  # fmt: skip

    async def answer_for_message(self, *, platform: str, message: str) -> str | None:
        """The answer a platform message shows, if it was linked (``link_messages``)."""
        query = select(AnswerMessageRow.answer_id).where(
            AnswerMessageRow.platform == platform, AnswerMessageRow.message == message
        )
        async with (
            translated_errors("could not read an answer's messages", self._timeout),
            self._sessions() as session,
        ):
            return await session.scalar(query)


async def _upsert(
    session: AsyncSession,
    table: type[Base],
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    changed: Sequence[str],
) -> None:
    """Insert ``rows`` into ``table``, a row whose unique ``keys`` (column names) exist
    already updating its ``changed`` columns instead: one INSERT ... ON CONFLICT DO UPDATE
    (PostgreSQL and SQLite, the two databases the bot runs on)."""
    dialect = session.bind.dialect.name if session.bind is not None else ""
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = upsert(table).values(list(rows))
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=list(keys),
            set_={name: statement.excluded[name] for name in changed},
        )
    )
