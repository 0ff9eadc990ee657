"""Team knowledge in answers, end to end: the real bot (Slack over HTTP, Teams over the Bot
Connector) with a real embedded Qdrant index of a docs folder, embeddings and answers from
the fake Ollama. What a user sees: the answering document cited and linked, follow-ups and
exact identifiers finding their file, invented markers gone, restricted sources invisible
elsewhere, secrets redacted before OpenAI, and an answer even when the index is empty or
unreachable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot import replies
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai import FakeOpenAI
from tests.support import teams as teams_e2e
from tests.support.harness import SlackBotUnderTest, bot_settings, records_written, running_bot
from tests.support.knowledge_helpers import write
from tests.support.processes import closed_port
from tests.support.slack_payloads import CHANNEL, mention
from tests.support.teams import PERSONAL, SQLITE_ONLY, TeamsBotUnderTest

DOCS = {
    "runbooks/deploy.md": (
        "# Deploying the billing service\n\n"
        "Deploy the billing service with `deployctl push billing --env prod`.\n\n"
        "## Rolling back\n\n"
        "To roll back the billing service, run `deployctl rollback billing --to previous`. "
        "A rollback takes about two minutes.\n"
    ),
    "errors.md": (
        "# Error codes\n\n"
        "ERR_LEDGER_7731 means the ledger connection pool is exhausted: raise LEDGER_POOL_SIZE.\n"
    ),
    "onboarding.md": "# Onboarding\n\nWelcome! Ask your buddy for a laptop and a badge.\n",
}
SECRET_DOC = {"ops.md": "# Ops\n\nThe deploy token is ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8.\n"}
RESTRICTED_DOC = {"secret-plans.md": "# Project Zebra\n\nProject Zebra launches in March.\n"}


def cite_first(messages: list[dict[str, Any]]) -> str:
    """A model that cites source [1] and invents [9]."""
    return "Here is how [1]. Also see [9]."


def prompt_of(fake: FakeOllama, index: int = -1) -> str:
    return "\n".join(m["content"] for m in fake.requests[index]["messages"])


def blocks_text(message: Any) -> str:
    return json.dumps(message.blocks)


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    """Ollama with the chat model and the embedding model pulled."""
    async with FakeOllama(models=["codellama:7b", "nomic-embed-text"]) as fake:
        yield fake


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write(tmp_path / "docs", DOCS)


@pytest.fixture
def restricted(tmp_path: Path) -> Path:
    return write(tmp_path / "private", RESTRICTED_DOC)


@pytest.fixture
def bot_overrides(tmp_path: Path, docs: Path, restricted: Path) -> dict[str, Any]:
    # The private folder is visible only in another workspace.
    return {
        "knowledge_sources": f"{docs},{restricted}?only=T_OTHER",
        "knowledge_store": str(tmp_path / "store"),
        "knowledge_refresh_minutes": 0,
    }


async def indexed(bot: SlackBotUnderTest) -> SlackBotUnderTest:
    knowledge = bot.runtime.knowledge
    assert knowledge is not None
    reports = await knowledge.index()
    assert all(r.ok for r in reports), reports
    return bot


async def ask(bot: SlackBotUnderTest, text: str, ts: str, thread_ts: str | None = None) -> Any:
    response = await bot.post_event(mention(text, ts, thread_ts=thread_ts))
    assert response.status == 200
    await bot.settle()
    shown = bot.slack.messages(CHANNEL, thread_ts or ts)
    assert shown, [(c.method, c.args.get("channel"), c.status, c.error) for c in bot.slack.calls]
    return shown[-1]


async def test_slack_answer_cites_and_links_the_document(slack_bot: SlackBotUnderTest) -> None:
    bot = await indexed(slack_bot)
    bot.ollama.reply_fn = cite_first
    answer = await ask(bot, "how do I roll back the billing service?", "1500000000.000100")
    prompt = prompt_of(bot.ollama)
    assert "[1] Deploying the billing service" in prompt and "deployctl rollback" in prompt
    assert answer.text.startswith("Here is how [1]. Also see .")  # invented [9] removed
    shown = blocks_text(answer)
    assert "deploy.md" in shown and "Deploying the billing service" in shown
    assert "Sources" in shown and "errors.md" not in shown  # only the cited source
    # The analytics page counts the cited document, and no knowledge gap.
    (record,) = await records_written(bot)
    assert record.knowledge == "matched"
    assert bot.runtime.analytics is not None
    figures = await bot.runtime.analytics.read(7)
    assert [(d.title, d.answers) for d in figures.documents] == [
        ("Deploying the billing service", 1)
    ]
    assert figures.no_match == 0


async def test_slack_follow_up_and_identifier_find_their_files(
    slack_bot: SlackBotUnderTest,
) -> None:
    bot = await indexed(slack_bot)
    bot.ollama.reply_fn = cite_first
    root = "1500000000.000200"
    await ask(bot, "how do I deploy the billing service to production?", root)
    await ask(bot, "and how do I roll it back?", "1500000000.000300", thread_ts=root)
    assert "deployctl rollback" in prompt_of(bot.ollama)  # the follow-up found the runbook
    answer = await ask(bot, "what does ERR_LEDGER_7731 mean?", "1500000000.000400")
    assert "[1] Error codes" in prompt_of(bot.ollama)  # the exact identifier's file first
    assert "errors.md" in blocks_text(answer)


async def test_restricted_source_never_reaches_another_workspace(
    slack_bot: SlackBotUnderTest,
) -> None:
    bot = await indexed(slack_bot)
    bot.ollama.reply_fn = cite_first
    answer = await ask(bot, "when does Project Zebra launch?", "1500000000.000500")
    assert "Zebra launches" not in prompt_of(bot.ollama)
    assert "secret-plans" not in answer.text + blocks_text(answer)
    listing = await ask(bot, "/search Project Zebra launch", "1500000000.000600")
    assert "secret-plans" not in listing.text and "launches in March" not in listing.text
    # The restriction is in the store query: the workspace it names does see it.
    knowledge = bot.runtime.knowledge
    assert knowledge is not None
    found = await knowledge.search("Project Zebra", scope=("T_OTHER", "C1"))
    assert [p.document for p in found][:1] == ["secret-plans.md"]


async def test_search_lists_documents_without_a_model_call(slack_bot: SlackBotUnderTest) -> None:
    bot = await indexed(slack_bot)
    chats = len(bot.ollama.requests)
    listing = await ask(bot, "/search rollback billing", "1500000000.000700")
    assert len(bot.ollama.requests) == chats  # no model asked
    assert "Deploying the billing service" in listing.text and "deploy.md" in listing.text


@pytest.fixture
def empty_overrides(tmp_path: Path) -> dict[str, Any]:
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"knowledge_sources": str(empty), "knowledge_store": str(tmp_path / "store")}


async def test_empty_index_and_unreachable_store_still_answer(
    fake_slack: Any,
    fake_ollama: FakeOllama,
    redis_url: str,
    database_url: str,
    tmp_path: Path,
    empty_overrides: dict[str, Any],
) -> None:
    common = {
        "slack_bot_token": "xoxb-test",
        "slack_signing_secret": "s3cr3t",
        "slack_api_url": fake_slack.api_url,
        "ollama_base_url": fake_ollama.url,
        "redis_url": redis_url,
        "database_url": database_url,
        "knowledge_refresh_minutes": 0,
    }
    from tests.support.harness import BOT_TOKEN, SIGNING_SECRET

    common |= {"slack_bot_token": BOT_TOKEN, "slack_signing_secret": SIGNING_SECRET}
    async with running_bot(
        bot_settings(**common, **empty_overrides), fake_slack, fake_ollama
    ) as bot:
        answer = await ask(bot, "how do I roll back?", "1500000000.000800")
        assert answer.text.startswith(fake_ollama.reply)
        assert replies.NO_SOURCE_MATCHED.strip("_") in answer.text
        (record,) = await records_written(bot)
        assert record.knowledge == "no_match"  # a knowledge gap on the analytics page
    unreachable = {
        "knowledge_sources": str(tmp_path / "empty"),
        "knowledge_store": f"http://127.0.0.1:{closed_port()}",
    }
    async with running_bot(bot_settings(**common, **unreachable), fake_slack, fake_ollama) as bot:
        answer = await ask(bot, "how do I roll back?", "1500000000.000900")
        assert answer.text.startswith(fake_ollama.reply)
        assert replies.KNOWLEDGE_UNAVAILABLE.strip("_") in answer.text
        newest = (await records_written(bot, count=2))[0]  # the first bot's record is there too
        assert newest.knowledge == "unavailable"


async def test_secret_in_a_document_is_redacted_before_openai(
    fake_slack: Any,
    fake_ollama: FakeOllama,
    fake_openai: FakeOpenAI,
    redis_url: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    from tests.support.harness import BOT_TOKEN, SIGNING_SECRET

    docs = write(tmp_path / "ops", SECRET_DOC)
    settings = bot_settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake_slack.api_url,
        ollama_base_url=fake_ollama.url,
        redis_url=redis_url,
        database_url=database_url,
        openai_api_key="sk-test-0000000000000000000000",
        openai_base_url=fake_openai.url,
        knowledge_sources=str(docs),
        knowledge_store=str(tmp_path / "store"),
        knowledge_refresh_minutes=0,
    )
    async with running_bot(settings, fake_slack, fake_ollama) as bot:
        await indexed(bot)
        await ask(bot, "/premium which deploy token do we use?", "1500000000.001000")
    sent = json.dumps(fake_openai.requests[-1])
    assert "Ops" in sent and "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8" not in sent


@pytest.fixture
def settings_overrides(tmp_path: Path, docs: Path) -> dict[str, Any]:
    return {
        "microsoft_app_id": teams_e2e.APP_ID,
        "microsoft_app_password": teams_e2e.APP_PASSWORD,
        "knowledge_sources": str(docs),
        "knowledge_store": str(tmp_path / "store"),
        "knowledge_refresh_minutes": 0,
    }


@SQLITE_ONLY
async def test_teams_answer_carries_citation_entities(
    connector: Any,
    login: Any,
    fake_ollama: FakeOllama,
    redis_url: str,
    database_url: str,
    settings_overrides: dict[str, Any],
) -> None:
    bots = teams_e2e.running_teams_bot(
        settings_overrides, connector, login, fake_ollama, redis_url, database_url
    )
    bot: TeamsBotUnderTest = await anext(bots)
    try:
        knowledge = bot.runtime.knowledge
        assert knowledge is not None
        await knowledge.index()
        fake_ollama.reply_fn = cite_first
        resp = await bot.post(bot.message("personal_message", "how do I roll back billing?"))
        assert resp.status in (200, 201, 202)
        await bot.settle()
        final = [s for s in connector.shown(PERSONAL) if s.final][-1]
        assert final.text.startswith("Here is how [1].") and "[9]" not in final.text
        assert final.ai_generated
        (claim,) = final.citations
        assert claim["position"] == 1
        assert claim["appearance"]["name"].startswith("Deploying the billing service")
    finally:
        await bots.aclose()
