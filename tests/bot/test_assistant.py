"""The core end to end with a scripted model: memory, commands, errors, usage ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.app.builders import PROVIDER_NAMES
from bot import replies
from bot.assistant import Assistant
from bot.conversation import ConversationKey, IncomingMessage
from bot.dispatch import LocalDispatcher
from bot.jobs import ReplyTo, SlackEvent
from bot.ledger import Ledger
from bot.ratelimit import LocalRateLimiter, RateLimiter
from bot.redis_batch import RedisBatch
from bot.state import ConversationState, redis_state
from bot.tasks import TaskTracker
from bot.workqueue import Job, JobProgress
from inference.base import GenerationFailed, ModelNotFound, ModelUnavailable
from tests.fakes.core import RecordingSink, ScriptedModel
from tests.support.fixtures_db import recorded, votes_on

KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")
OTHER = ConversationKey("slack", "T1", "C1", "1700000000.000900")


@pytest.fixture
async def state(redis_url: str) -> AsyncIterator[ConversationState]:
    client = Redis.from_url(redis_url)
    batch = RedisBatch(redis=client)
    yield redis_state(redis=client, batch=batch, ttl_seconds=600)
    await batch.close()  # the last answer's memory, deferred
    await client.aclose()


def make(
    state: ConversationState,
    model: ScriptedModel,
    ledger: Ledger | None = None,
    rate_limiter: RateLimiter | None = None,
) -> Assistant:
    return Assistant(
        state=state,
        local_model=model,
        premium=None,
        premium_model_name="gpt-4.1",
        ledger=ledger,
        system_prompt="be brief",
        max_input_chars=100,
        rate_limiter=rate_limiter,
        names=PROVIDER_NAMES,  # the wording the composition root gives
    )


_counter = iter(range(10**6))


def msg(text: str, key: ConversationKey = KEY, sender: str = "U1") -> IncomingMessage:
    return IncomingMessage(key, f"m{next(_counter)}", sender, text)


async def ask(bot: Assistant, text: str, key: ConversationKey = KEY) -> str:
    sink = RecordingSink()
    await bot.handle(msg(text, key), sink)
    assert sink.closed == 1
    return sink.text


async def test_answer_streams_and_follow_up_sees_history(state: ConversationState) -> None:
    model = ScriptedModel(reply="A monad is a monoid.")
    bot = make(state, model)
    sink = RecordingSink()
    await bot.handle(msg("what is a monad?"), sink)
    assert sink.text == "A monad is a monoid."
    assert len(sink.writes) > 1  # streamed in pieces
    await ask(bot, "and a functor?")
    assert [(t.role, t.content) for t in model.calls[1]] == [
        ("system", "be brief"),
        ("user", "what is a monad?"),
        ("assistant", "A monad is a monoid."),
        ("user", "and a functor?"),
    ]
    await ask(bot, "unrelated", key=OTHER)
    assert [t.role for t in model.calls[2]] == ["system", "user"]


async def test_same_message_id_is_answered_once_without_redis() -> None:
    """Without Redis the local dispatcher dedupes where work is submitted."""
    answered: list[str] = []

    async def handler(job: Job, progress: JobProgress) -> None:
        assert isinstance(job.work, SlackEvent)
        answered.append(job.work.event["text"])

    def question(text: str) -> SlackEvent:
        return SlackEvent({"text": text}, "T1", "U0", ReplyTo("slack", channel="C1"))

    tracker = TaskTracker()
    dispatcher = LocalDispatcher(tracker=tracker, handler=handler)
    assert await dispatcher.submit("C1:1.1", question("hi"))
    assert not await dispatcher.submit("C1:1.1", question("hi"))
    assert await dispatcher.submit("C1:1.2", question("again"))
    assert await tracker.wait_idle(5)
    assert sorted(answered) == ["again", "hi"]


async def test_a_thread_held_too_long_by_another_answer_gets_the_busy_reply(
    redis_url: str,
) -> None:
    client = Redis.from_url(redis_url)
    batch = RedisBatch(redis=client)
    state = redis_state(redis=client, batch=batch, ttl_seconds=600, lock_wait_seconds=0.3)
    model = ScriptedModel()
    bot = make(state, model)
    async with state.memory.hold(KEY):  # another answer (another replica) holds the thread
        assert await asyncio.wait_for(ask(bot, "anyone there?"), 5) == replies.BUSY
    assert model.calls == []
    assert await ask(bot, "now?") == model.reply  # released: answered
    await batch.close()
    await client.aclose()


async def test_reset_forgets_only_this_conversation(state: ConversationState) -> None:
    model = ScriptedModel()
    bot = make(state, model)
    await ask(bot, "one")
    await ask(bot, "two", key=OTHER)
    assert await ask(bot, "/reset") == replies.RESET_DONE
    await ask(bot, "three")
    await ask(bot, "four", key=OTHER)
    assert [t.content for t in model.calls[2]][1:] == ["three"]
    assert len(model.calls[3]) == 4  # OTHER kept its history


async def test_help_model_unknown_and_premium_off(state: ConversationState) -> None:
    model = ScriptedModel()
    bot = make(state, model)
    help_text = await ask(bot, "/help")
    for command in ("/reset", "/help", "/model", "/search"):
        assert command in help_text
    assert "/premium" not in help_text  # not configured here
    assert "scripted:1b" in await ask(bot, "/model")
    unknown = await ask(bot, "/deploy now")
    assert "/deploy" in unknown
    # The unknown-command reply names the commands /help lists, and no others.
    for command in ("/reset", "/help", "/model", "/search"):
        assert command in unknown
    assert "/premium" not in unknown
    premium = await ask(bot, "/premium what is love?")
    assert "not configured" in premium and "OPENAI_API_KEY" in premium
    assert model.calls == []


async def test_empty_and_oversized_questions_are_refused(state: ConversationState) -> None:
    model = ScriptedModel()
    bot = make(state, model)
    assert await ask(bot, "   ") == replies.EMPTY_QUESTION
    too_long = await ask(bot, "x" * 101)
    assert "101" in too_long and "100" in too_long
    assert model.calls == []


@pytest.mark.parametrize(
    ("error", "fail_after", "expected"),
    [
        (ModelUnavailable("down"), 0, replies.MODEL_UNAVAILABLE),
        (ModelNotFound("nope"), 0, "ollama pull scripted:1b"),
        (GenerationFailed("boom"), 2, replies.INCOMPLETE),
    ],
)
async def test_model_failures_become_clear_messages(
    state: ConversationState, error: Exception, fail_after: int, expected: str
) -> None:
    model = ScriptedModel(reply="0123456789abcdef", error=error, fail_after=fail_after)  # type: ignore[arg-type]
    bot = make(state, model)
    text = await ask(bot, "hi")
    assert expected in text
    assert "boom" not in text and "down" not in text
    if fail_after:
        assert text.startswith("0123456789")  # what was shown stays, not repeated
        assert text.count("0123456789") == 1
    # A failed answer is not remembered.
    model.error = None
    await ask(bot, "again")
    assert [t.content for t in model.calls[-1]] == ["be brief", "again"]


async def test_unexpected_errors_never_leak(state: ConversationState) -> None:
    class Exploding(ScriptedModel):
        async def stream(self, turns):  # type: ignore[no-untyped-def, override]
            raise RuntimeError("secret-token-xyz at /internal/path")
            yield  # pragma: no cover

    text = await ask(make(state, Exploding()), "hi")
    assert text == replies.INTERNAL_ERROR


async def test_each_answer_is_recorded_in_the_ledger(
    state: ConversationState, ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    model = ScriptedModel(reply="0123456789", first_token_delay=0.06)  # 60 ms to answer
    bot = make(state, model, ledger)
    await ask(bot, "hi")
    model.error, model.fail_after, model.first_token_delay = ModelUnavailable("x"), 0, 0.0
    await ask(bot, "again")
    rows = await recorded(ledger_engine)
    assert [r.outcome for r in rows] == ["model_unavailable", "ok"]
    ok = rows[1]
    assert (ok.platform, ok.workspace, ok.user, ok.route, ok.model) == (
        "slack",
        "T1",
        "U1",
        "local",
        "scripted:1b",
    )
    assert ok.conversation == KEY.as_id()
    assert (ok.prompt_tokens, ok.completion_tokens) == (11, 2)
    # The model took 60 ms to its first token: both times include that wait.
    assert ok.first_token_ms is not None and ok.first_token_ms >= 50
    assert ok.latency_ms >= ok.first_token_ms


async def test_precheck_refuses_before_anything_and_counts_a_question_once(
    state: ConversationState,
) -> None:
    model = ScriptedModel(reply="ok")
    limiter = LocalRateLimiter(per_minute=2, per_day=0, clock=lambda: 60.0)
    bot = make(state, model, rate_limiter=limiter)
    assert await bot.precheck(msg("   ")) == replies.EMPTY_QUESTION
    assert "limit here is 100" in (await bot.precheck(msg("x" * 101)) or "")
    assert "not configured" in (await bot.precheck(msg("/premium hi")) or "")
    assert await bot.precheck(msg("/help")) is None  # commands are not admission's
    # Two questions in a limit of two: each checked first, then answered, counted once.
    for n in range(2):
        question = msg(f"question {n}")
        assert await bot.precheck(question) is None
        sink = RecordingSink()
        await bot.handle(question, sink)
        assert sink.text == "ok"
    assert "limit of 2 questions per minute" in (await bot.precheck(msg("three")) or "")
    assert len(model.calls) == 2


async def test_every_model_answer_gets_an_id_the_ledger_keeps_and_votes_name(
    state: ConversationState, ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    from datetime import UTC, datetime

    from bot.feedback import VOTE_RECORDED
    from bot.votes import Vote

    bot = make(state, ScriptedModel(reply="A burrito."), ledger)
    sink = RecordingSink()
    await bot.handle(msg("what is a monad?"), sink)
    [row] = await recorded(ledger_engine)
    assert sink.answer_id and row.answer_id == sink.answer_id
    now = datetime.now(UTC)
    up = Vote(row.answer_id, "slack", "T1", "U9", "up", now)
    assert await bot.feedback.record_vote(up) == VOTE_RECORDED["up"]
    assert (
        await bot.feedback.record_vote(Vote(row.answer_id, "slack", "T1", "U9", "down", now))
        == (VOTE_RECORDED["down"])
    )
    assert await votes_on(ledger_engine, row.answer_id) == {"slack:U9": "down"}
    # A command is no model answer: no id, no feedback.
    help_sink = RecordingSink()
    await bot.handle(msg("/help"), help_sink)
    assert help_sink.answer_id is None


async def test_a_vote_while_the_database_is_down_is_refused_politely(
    state: ConversationState,
) -> None:
    from datetime import UTC, datetime

    from bot.database import create_engine
    from bot.feedback import VOTE_NOT_RECORDED
    from bot.votes import Vote

    engine = create_engine("postgresql://nobody@127.0.0.1:1/none")
    try:
        bot = make(state, ScriptedModel(), Ledger(engine=engine, timeout_seconds=2))
        vote = Vote("a1", "slack", "T1", "U1", "up", datetime.now(UTC))
        assert await bot.feedback.record_vote(vote) == VOTE_NOT_RECORDED
        on_message = await bot.feedback.record_message_vote(
            platform="teams", workspace="T1", user="U1", value="up", message="C1:1"
        )
        assert on_message == VOTE_NOT_RECORDED
    finally:
        await engine.dispose()
