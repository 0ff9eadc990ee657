"""`/premium` through the core: the real ChatOpenAI against a fake OpenAI server, real Redis
memory and a real usage ledger (SQLite and PostgreSQL): allowlist, budgets, missing key,
secret redaction, cost in the ledger and `/model`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.app.builders import PROVIDER_NAMES, build_premium
from adapters.app.settings import Settings
from bot import replies
from bot.assistant import Assistant
from bot.budget import NO_BUDGETS, Budgets, Price
from bot.conversation import ConversationKey, IncomingMessage
from bot.database import create_engine
from bot.ledger import Ledger
from bot.premium import Premium
from bot.ratelimit import LocalRateLimiter
from bot.redis_batch import RedisBatch
from bot.state import ConversationState, redis_state
from bot.usage import UsageRecord
from inference.openai import OpenAIChatModel
from tests.fakes.core import RecordingSink, ScriptedModel
from tests.fakes.openai import API_KEY, FakeOpenAI
from tests.support.fixtures_db import recorded
from tests.support.secrets import (
    AWS_ACCESS,
    AWS_SECRET,
    GITHUB_CLASSIC,
    JWT,
    OPENAI_PROJECT,
    PRIVATE_KEY,
    SLACK_BOT,
    UNTOUCHED,
)

NOW = datetime(2025, 11, 15, 12, 0, tzinfo=UTC)
KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")
GPT41 = Price(2.00, 8.00)


@pytest.fixture
async def state(redis_url: str) -> AsyncIterator[ConversationState]:
    client = Redis.from_url(redis_url)
    batch = RedisBatch(redis=client)
    yield redis_state(redis=client, batch=batch, ttl_seconds=600)
    await batch.close()  # the last answer's memory, deferred
    await client.aclose()


@pytest.fixture
def local() -> ScriptedModel:
    return ScriptedModel(reply="local answer", name="codellama:7b")


def premium_route(
    fake: FakeOpenAI,
    *,
    allowed: Collection[str] | None = None,
    budgets: Budgets = NO_BUDGETS,
    model: str = "gpt-4.1",
    api_key: str = API_KEY,
) -> Premium:
    chat = OpenAIChatModel(api_key=api_key, model=model, base_url=fake.url, max_retries=0)
    return Premium(model=chat, allowed_users=allowed, price=GPT41, budgets=budgets)


def make(
    state: ConversationState,
    local: ScriptedModel,
    premium: Premium | None,
    ledger: Ledger | None = None,
    **options: object,
) -> Assistant:
    return Assistant(
        state=state,
        local_model=local,
        premium=premium,
        premium_model_name="gpt-4.1",
        ledger=ledger,
        system_prompt="be brief",
        max_input_chars=20_000,
        names=PROVIDER_NAMES,
        now=lambda: NOW,
        **options,  # type: ignore[arg-type]
    )


_ids = iter(range(10**6))


async def ask(bot: Assistant, text: str, *, sender: str = "U1", key: ConversationKey = KEY) -> str:
    sink = RecordingSink()
    await bot.handle(IncomingMessage(key, f"m{next(_ids)}", sender, text), sink)
    assert sink.closed == 1
    return sink.text


def spent(user: str, usd: float, *, workspace: str = "T1", at: datetime = NOW) -> UsageRecord:
    """A premium ledger row that cost ``usd``."""
    return UsageRecord(
        platform="slack",
        workspace=workspace,
        user=user,
        conversation=KEY.as_id(),
        route="premium",
        model="gpt-4.1",
        prompt_tokens=1000,
        completion_tokens=100,
        latency_ms=1200,
        first_token_ms=300,
        outcome="ok",
        created_at=at,
        cost_usd=usd,
    )


# --- the answer -----------------------------------------------------------------------


async def test_premium_answers_with_memory_names_the_model_and_records_cost(
    state: ConversationState,
    local: ScriptedModel,
    fake_openai: FakeOpenAI,
    ledger: Ledger,
    ledger_engine: AsyncEngine,
) -> None:
    bot = make(state, local, premium_route(fake_openai), ledger)
    await ask(bot, "what is a monad?")  # local
    fake_openai.reply = "A monad is a **monoid** in the category of endofunctors."
    fake_openai.usage = (1000, 500)
    text = await ask(bot, "/premium explain it better")
    assert text.startswith(fake_openai.reply)
    assert "gpt-4.1" in text and "premium" in text
    assert fake_openai.messages() == [
        ("system", "be brief"),
        ("user", "what is a monad?"),
        ("assistant", "local answer"),
        ("user", "explain it better"),
    ]
    # The local model sees the premium exchange as history next time.
    await ask(bot, "thanks")
    assert [t.content for t in local.calls[-1]][-3:] == [
        "explain it better",
        fake_openai.reply,
        "thanks",
    ]
    rows = await recorded(ledger_engine)
    assert [(r.route, r.model, r.outcome) for r in rows] == [
        ("local", "codellama:7b", "ok"),
        ("premium", "gpt-4.1", "ok"),
        ("local", "codellama:7b", "ok"),
    ]
    premium = rows[1]
    assert (premium.prompt_tokens, premium.completion_tokens) == (1000, 500)
    assert premium.cost_usd == pytest.approx(1000 * 2 / 1e6 + 500 * 8 / 1e6)
    assert rows[0].cost_usd == 0 and rows[2].cost_usd == 0


async def test_no_api_key_means_premium_is_off_and_nothing_is_sent(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI
) -> None:
    settings = Settings(_env_file=None, openai_base_url=fake_openai.url)  # type: ignore[call-arg]
    premium = build_premium(settings)
    assert premium is None
    text = await ask(make(state, local, premium), "/premium hello")
    assert "not configured" in text and "OPENAI_API_KEY" in text
    assert fake_openai.requests == [] and local.calls == []


async def test_a_user_not_on_the_allowlist_is_told_and_nothing_is_sent(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI
) -> None:
    bot = make(state, local, premium_route(fake_openai, allowed=frozenset({"U1"})))
    refused = await ask(bot, "/premium hi", sender="U2")
    assert refused == PROVIDER_NAMES.fill(replies.PREMIUM_NOT_ALLOWED, local_model="codellama:7b")
    assert fake_openai.requests == []
    assert "Premium **answer**." in await ask(bot, "/premium hi", sender="U1")
    assert len(fake_openai.requests) == 1


# --- budgets --------------------------------------------------------------------------


async def test_user_over_budget_is_refused_until_next_month(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI, ledger: Ledger
) -> None:
    await ledger.record(spent("U1", 12.5))
    await ledger.record(spent("U1", 7.5, at=NOW - timedelta(days=3)))
    # Last month's spend and other people's spend do not count against U1.
    await ledger.record(spent("U1", 100, at=datetime(2025, 10, 31, 23, 59, tzinfo=UTC)))
    await ledger.record(spent("U2", 50))
    bot = make(state, local, premium_route(fake_openai, budgets=Budgets(user_usd=20)), ledger)
    text = await ask(bot, "/premium hi")
    assert "$20.00 of your $20.00" in text
    assert "December 1" in text and "PREMIUM_MONTHLY_BUDGET_USD" in text
    assert fake_openai.requests == []
    # Budgets are per user: U2 spent $50 this month and is over too; U3 spent nothing.
    assert "$50.00" in await ask(bot, "/premium hi", sender="U2")
    assert "Premium **answer**." in await ask(bot, "/premium hi", sender="U3")
    assert len(fake_openai.requests) == 1


async def test_user_under_budget_is_answered(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI, ledger: Ledger
) -> None:
    await ledger.record(spent("U1", 19.99))
    bot = make(state, local, premium_route(fake_openai, budgets=Budgets(user_usd=20)), ledger)
    assert "Premium **answer**." in await ask(bot, "/premium hi")


async def test_workspace_over_budget_is_refused_for_everyone_in_it(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI, ledger: Ledger
) -> None:
    for user in ("U7", "U8", "U9"):
        await ledger.record(spent(user, 40))
    await ledger.record(spent("U7", 500, workspace="T2"))
    budgets = Budgets(user_usd=0, workspace_usd=100)
    bot = make(state, local, premium_route(fake_openai, budgets=budgets), ledger)
    text = await ask(bot, "/premium hi")
    assert "This workspace has used $120.00 of its $100.00" in text
    assert "PREMIUM_WORKSPACE_MONTHLY_BUDGET_USD" in text
    assert fake_openai.requests == []
    other = ConversationKey("slack", "T3", "C1", "1")
    assert "Premium **answer**." in await ask(bot, "/premium hi", key=other)


async def test_an_over_budget_refusal_does_not_use_up_the_rate_limit(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI, ledger: Ledger
) -> None:
    await ledger.record(spent("U1", 25))
    bot = make(
        state,
        local,
        premium_route(fake_openai, budgets=Budgets(user_usd=20)),
        ledger,
        rate_limiter=LocalRateLimiter(per_minute=1, per_day=10),
    )
    assert "monthly premium budget" in await ask(bot, "/premium hi")
    assert await ask(bot, "local question") == "local answer"


async def test_an_unreachable_ledger_refuses_premium_rather_than_spend_blind(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'chatbot.db'}")
    try:
        down = Ledger(engine=engine, timeout_seconds=2)
        bot = make(state, local, premium_route(fake_openai, budgets=Budgets(user_usd=20)), down)
        text = await ask(bot, "/premium hi")
        assert text == PROVIDER_NAMES.fill(
            replies.PREMIUM_BUDGET_UNKNOWN, local_model="codellama:7b"
        )
        assert fake_openai.requests == []
        # Without budgets there is nothing to check: premium answers.
        unlimited = make(state, local, premium_route(fake_openai), down)
        assert "Premium **answer**." in await ask(unlimited, "/premium hi")
        # A bot with budgets but no ledger at all is just as careful.
        no_ledger = make(state, local, premium_route(fake_openai, budgets=Budgets(5, 0)))
        assert "can't check the premium budget" in await ask(no_ledger, "/premium hi")
    finally:
        await engine.dispose()


# --- /model ---------------------------------------------------------------------------


async def test_model_shows_the_models_and_this_months_spend_and_budget(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI, ledger: Ledger
) -> None:
    await ledger.record(spent("U1", 1.5))
    await ledger.record(spent("U2", 3.25))
    await ledger.record(spent("U1", 9, at=datetime(2025, 10, 2, tzinfo=UTC)))
    budgets = Budgets(user_usd=20, workspace_usd=250)
    bot = make(state, local, premium_route(fake_openai, budgets=budgets), ledger)
    text = await ask(bot, "/model")
    assert "codellama:7b" in text and "gpt-4.1" in text
    assert "$1.50 of your $20.00 budget" in text
    assert "$4.75 of $250.00" in text
    unlimited = make(state, local, premium_route(fake_openai), ledger)
    assert "$1.50 (no monthly limit)" in await ask(unlimited, "/model")
    allowlisted = make(state, local, premium_route(fake_openai, allowed={"U2"}), ledger)
    assert "not on the list" in await ask(allowlisted, "/model")
    assert fake_openai.requests == []


async def test_model_without_premium_or_with_the_ledger_down(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    assert "not configured" in await ask(make(state, local, None), "/model")
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'chatbot.db'}")
    try:
        bot = make(state, local, premium_route(fake_openai), Ledger(engine=engine))
        text = await ask(bot, "/model")
    finally:
        await engine.dispose()
    assert "gpt-4.1" in text and "unknown right now" in text


# --- redaction ------------------------------------------------------------------------

SECRETS = [
    ("aws-access-key", AWS_ACCESS, f"Why does `aws s3 ls` fail with key {AWS_ACCESS}?"),
    (
        "aws-secret-key",
        AWS_SECRET,
        f"my ~/.aws/credentials has\naws_secret_access_key={AWS_SECRET}",
    ),
    (
        "openai-key",
        OPENAI_PROJECT,
        f"openai.AuthenticationError with OPENAI_API_KEY={OPENAI_PROJECT}",
    ),
    ("slack-token", SLACK_BOT, f"slack_sdk says invalid_auth for {SLACK_BOT}"),
    (
        "github-token",
        GITHUB_CLASSIC,
        f"git push fails: https://{GITHUB_CLASSIC}@github.com/o/r.git",
    ),
    ("bearer-token", "abc123def456ghi789", "curl -H 'Authorization: Bearer abc123def456ghi789' x"),
    ("jwt", JWT, f"decode this: {JWT}"),
    (
        "private-key",
        "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi0Xcdmb4NWy",
        f"{PRIVATE_KEY}\nis it valid?",
    ),
    ("url-password", "s3cr3t", "psql postgresql://app:s3cr3t@db.internal/app hangs"),
    ("password", "hunter2", "config.yaml:\ndb:\n  password: hunter2\nwhy is it rejected?"),
    ("secret", "abc123xyz", '{"client_secret": "abc123xyz"} - is this JSON valid?'),
]


@pytest.mark.parametrize(("kind", "secret", "question"), SECRETS, ids=[s[0] for s in SECRETS])
async def test_each_secret_kind_is_redacted_from_the_question_sent_to_openai(
    state: ConversationState,
    local: ScriptedModel,
    fake_openai: FakeOpenAI,
    kind: str,
    secret: str,
    question: str,
) -> None:
    bot = make(state, local, premium_route(fake_openai))
    text = await ask(bot, f"/premium {question}")
    sent = fake_openai.messages()[-1][1]
    assert secret not in fake_openai.sent_text()
    assert f"[REDACTED:{kind}]" in sent
    # The user is told what kind was removed, never the value.
    assert "replaced" in text and secret not in text
    # Memory keeps the original; the local model sees it unchanged.
    await ask(bot, "and locally?")
    assert question in [t.content for t in local.calls[-1]]


async def test_history_is_redacted_too_and_the_local_model_sees_it_unchanged(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI
) -> None:
    bot = make(state, local, premium_route(fake_openai))
    first = f"my env:\nSLACK_BOT_TOKEN={SLACK_BOT}\nDB_PASSWORD=hunter2"
    await ask(bot, first)
    assert local.calls[-1][-1].content == first  # local: unchanged
    local.reply = f"Your token {SLACK_BOT} looks fine."  # the model echoed it back
    await ask(bot, "is it valid?")
    text = await ask(bot, "/premium what does invalid_auth mean?")
    sent = fake_openai.sent_text()
    assert SLACK_BOT not in sent and "hunter2" not in sent
    assert fake_openai.messages()[1] == (
        "user",
        "my env:\nSLACK_BOT_TOKEN=[REDACTED:slack-token]\nDB_PASSWORD=[REDACTED:password]",
    )
    assert fake_openai.messages()[4] == (
        "assistant",
        "Your token [REDACTED:slack-token] looks fine.",
    )
    assert fake_openai.messages()[-1] == ("user", "what does invalid_auth mean?")
    assert "a Slack token and a password" in text
    assert SLACK_BOT not in text and "hunter2" not in text


@pytest.mark.parametrize("question", UNTOUCHED[:8] + UNTOUCHED[13:22])
async def test_ordinary_text_reaches_openai_unchanged_without_a_note(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI, question: str
) -> None:
    text = await ask(make(state, local, premium_route(fake_openai)), f"/premium {question}")
    assert fake_openai.messages()[-1] == ("user", question)
    assert "replaced" not in text and "REDACTED" not in text


async def test_the_local_route_is_never_redacted(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI
) -> None:
    question = f"why is {AWS_ACCESS} denied? password=hunter2"
    text = await ask(make(state, local, premium_route(fake_openai)), question)
    assert text == "local answer"
    assert local.calls[-1][-1].content == question
    assert fake_openai.requests == []


# --- provider failures ----------------------------------------------------------------


async def test_a_refused_api_key_gives_an_admin_pointer_and_no_detail(
    state: ConversationState,
    local: ScriptedModel,
    fake_openai: FakeOpenAI,
    ledger: Ledger,
    ledger_engine: AsyncEngine,
) -> None:
    bot = make(state, local, premium_route(fake_openai, api_key="sk-revoked-0000000000000"), ledger)
    text = await ask(bot, "/premium hi")
    assert text == PROVIDER_NAMES.fill(replies.PREMIUM_AUTH_FAILED, local_model="codellama:7b")
    assert "sk-" not in text and "401" not in text
    (row,) = await recorded(ledger_engine)
    assert (row.route, row.outcome, row.cost_usd) == ("premium", "auth_failed", 0)


async def test_an_unknown_premium_model_points_at_premium_model(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI
) -> None:
    text = await ask(make(state, local, premium_route(fake_openai, model="gpt-9")), "/premium hi")
    assert "`gpt-9`" in text and "PREMIUM_MODEL" in text and "ollama" not in text


@pytest.mark.parametrize("status", [429, 500])
async def test_openai_busy_or_failing_is_explained(
    state: ConversationState, local: ScriptedModel, fake_openai: FakeOpenAI, status: int
) -> None:
    fake_openai.status_override = status
    text = await ask(make(state, local, premium_route(fake_openai)), "/premium hi")
    assert text == PROVIDER_NAMES.fill(replies.PREMIUM_UNAVAILABLE, local_model="codellama:7b")


async def test_a_dropped_stream_keeps_the_text_and_records_the_estimated_cost(
    state: ConversationState,
    local: ScriptedModel,
    fake_openai: FakeOpenAI,
    ledger: Ledger,
    ledger_engine: AsyncEngine,
) -> None:
    fake_openai.reply = "The first part of a long answer, and then the rest."
    fake_openai.chunk_size = 5
    fake_openai.fail_after_chunks = 3
    text = await ask(make(state, local, premium_route(fake_openai), ledger), "/premium explain")
    assert text.startswith("The first part") and "incomplete" in text
    (row,) = await recorded(ledger_engine)
    assert row.outcome == "generation_failed"
    assert row.completion_tokens > 0 and row.cost_usd > 0


# --- wiring ---------------------------------------------------------------------------


def test_build_premium_reads_the_allowlist_prices_and_budgets() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        openai_api_key="sk-x",
        premium_model="gpt-4o-mini-2024-07-18",
        premium_users=" U1, 29:abc ",
        premium_monthly_budget_usd=5,
        premium_workspace_monthly_budget_usd=50,
    )
    premium = build_premium(settings)
    assert premium is not None
    assert premium.model.name == "gpt-4o-mini-2024-07-18"
    assert premium.allowed_users == frozenset({"U1", "29:abc"})
    assert premium.price == Price(0.15, 0.60)
    assert premium.budgets == Budgets(user_usd=5, workspace_usd=50)
    assert premium.allows("29:abc") and not premium.allows("U2")


@pytest.mark.parametrize("users", ["*", "", "U1,*"])
def test_a_star_or_blank_allowlist_allows_everyone(users: str) -> None:
    settings = Settings(_env_file=None, openai_api_key="sk-x", premium_users=users)  # type: ignore[call-arg]
    premium = build_premium(settings)
    assert premium is not None and premium.allowed_users is None


def test_unknown_models_are_priced_at_the_dearest_known_price_or_as_configured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, openai_api_key="sk-x", premium_model="my-vllm-model"
    )
    premium = build_premium(settings)
    assert premium is not None and premium.price == Price(30.0, 60.0)
    assert "PREMIUM_PRICES_USD" in caplog.text
    priced = Settings(  # type: ignore[call-arg]
        _env_file=None,
        openai_api_key="sk-x",
        premium_model="my-vllm-model",
        premium_prices_usd={"my-vllm-model": (0.5, 1.5)},
    )
    premium = build_premium(priced)
    assert premium is not None and premium.price == Price(0.5, 1.5)
