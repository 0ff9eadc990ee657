"""Answers grounded in team knowledge, through the core: passages in the prompt, citation
markers kept or removed, sources shown, notes when nothing matched or the index is down,
`/search`, memory without passages, and the ledger's passage counts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import replies
from bot.assistant import Assistant
from bot.citations import MarkerFilter
from bot.conversation import ConversationKey, IncomingMessage
from bot.ledger import Ledger
from bot.premium import Premium
from bot.retrieval import Retriever, query_for, scope_of
from bot.state import local_state
from inference.base import Turn
from inference.knowledge import KnowledgeUnavailable, Passage
from tests.fakes.core import FixedKnowledge, RecordingSink, ScriptedModel
from tests.support.fixtures_db import recorded
from tests.support.grounding import DEPLOY, ERRORS, make

KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")

_ids = iter(range(10_000))


async def ask(bot: Assistant, text: str) -> RecordingSink:
    sink = RecordingSink()
    await bot.handle(IncomingMessage(KEY, f"m{next(_ids)}", "U1", text), sink)
    return sink


async def test_passages_reach_the_prompt_numbered_with_titles() -> None:
    model = ScriptedModel(reply="Run the rollback command [1].")
    bot, _ = make(model, FixedKnowledge([DEPLOY, ERRORS]))
    await ask(bot, "how do I roll back a deploy?")
    sent = model.calls[0]
    assert sent[0].role == "system" and "[1]" in sent[0].content  # asked to cite
    question = sent[-1].content
    assert "[1] Deploy runbook › Rollback" in question and "deployctl rollback" in question
    assert "[2] Error codes" in question
    assert question.endswith("Question: how do I roll back a deploy?")


async def test_cited_sources_are_listed_and_only_those() -> None:
    # The scripted model streams in 5-character pieces: "[1]" arrives split.
    model = ScriptedModel(reply="Use deployctl rollback [1]. Done.")
    bot, _ = make(model, FixedKnowledge([DEPLOY, ERRORS]))
    sink = await ask(bot, "how do I roll back?")
    assert sink.text == "Use deployctl rollback [1]. Done."
    assert sink.searched is False
    assert [(c.number, c.title, c.url) for c in sink.citations] == [
        (1, "Deploy runbook › Rollback", DEPLOY.url)
    ]
    assert "deployctl rollback" in sink.citations[0].excerpt


async def test_invented_marker_is_removed() -> None:
    model = ScriptedModel(reply="Raise the pool size [2][9]. See also [7].")
    bot, _ = make(model, FixedKnowledge([DEPLOY, ERRORS]))
    sink = await ask(bot, "what is ERR_DB_042?")
    assert sink.text == "Raise the pool size [2]. See also ."
    assert [c.number for c in sink.citations] == [2]


async def test_answer_citing_nothing_lists_sources_as_searched() -> None:
    model = ScriptedModel(reply="I am not sure.")
    bot, _ = make(model, FixedKnowledge([DEPLOY, ERRORS]))
    sink = await ask(bot, "how do I roll back?")
    assert sink.searched is True
    assert [c.number for c in sink.citations] == [1, 2]


async def test_nothing_matched_says_so_in_one_line() -> None:
    model = ScriptedModel(reply="From general knowledge: yes.")
    bot, _ = make(model, FixedKnowledge([]))
    sink = await ask(bot, "is the sky blue?")
    assert sink.text == "From general knowledge: yes.\n\n" + replies.NO_SOURCE_MATCHED
    assert sink.searched is False and sink.citations == []  # a model answer, no sources
    assert model.calls[0][-1].content == "is the sky blue?"  # no empty source block


async def test_unreachable_index_still_gets_an_answer_with_a_note() -> None:
    model = ScriptedModel(reply="Answer.")
    bot, _ = make(model, FixedKnowledge(error=KnowledgeUnavailable("qdrant down")))
    sink = await ask(bot, "how do I roll back?")
    assert sink.text == "Answer.\n\n" + replies.KNOWLEDGE_UNAVAILABLE


async def test_an_outage_is_one_log_line_per_question_and_its_traceback_once_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot")
    try:
        raise KnowledgeUnavailable("the store is in use by another process")
    except KnowledgeUnavailable as exc:
        error = exc  # raised once, with a traceback, as the store raises it
    bot, _ = make(ScriptedModel(reply="Answer."), FixedKnowledge(error=error))
    for question in ("one?", "two?", "three?"):
        await ask(bot, question)
    outage = [r for r in caplog.records if "team knowledge unavailable" in r.getMessage()]
    warnings = [r for r in outage if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and not any(r.exc_info for r in warnings)
    assert "KnowledgeUnavailable: the store is in use by another process" in warnings[0].message
    # The traceback at DEBUG, at most once a process (an earlier test may have shown it).
    assert [r.levelno for r in outage if r.exc_info] in ([], [logging.DEBUG])


class HangingKnowledge(FixedKnowledge):
    """A store that stopped answering (its queries never return)."""

    async def retrieve(self, query: str, *, scope: Sequence[str], limit: int = 5) -> list[Passage]:
        await asyncio.sleep(3600)
        return []


async def test_a_hanging_index_does_not_stall_the_answer() -> None:
    model = ScriptedModel(reply="Answer.")
    bot, _ = make(model, HangingKnowledge(), retrieve_timeout=0.2)
    sink = await asyncio.wait_for(ask(bot, "how do I roll back?"), 5)
    assert sink.text == "Answer.\n\n" + replies.KNOWLEDGE_UNAVAILABLE


async def test_without_knowledge_nothing_changes() -> None:
    model = ScriptedModel(reply="items[0] is first [1].")
    bot, _ = make(model, None)
    sink = await ask(bot, "how do I index a list?")
    assert sink.text == "items[0] is first [1]."  # no filtering without passages given
    assert sink.searched is False and sink.citations == []
    assert model.calls[0][-1].content == "how do I index a list?"


async def test_memory_keeps_question_and_answer_not_passages() -> None:
    model = ScriptedModel(reply="Use rollback [1].")
    bot, state = make(model, FixedKnowledge([DEPLOY]))
    await ask(bot, "how do I roll back?")
    assert await state.memory.history(KEY) == [
        Turn("user", "how do I roll back?"),
        Turn("assistant", "Use rollback [1]."),
    ]


async def test_follow_up_query_carries_the_previous_question() -> None:
    knowledge = FixedKnowledge([DEPLOY])
    bot, _ = make(ScriptedModel(reply="ok [1]"), knowledge)
    await ask(bot, "how do I deploy the billing service to production?")
    await ask(bot, "and how do I roll it back?")
    query, scope = knowledge.queries[1]
    assert query.startswith("and how do I roll it back?")
    assert "deploy the billing service" in query
    assert scope == ("T1", "C1")


def test_long_question_is_its_own_query() -> None:
    question = "how do I configure the connection pool size for the billing database in prod"
    assert query_for(question, [Turn("user", "earlier topic")]) == question


def test_scope_is_workspace_and_channel() -> None:
    assert scope_of(
        ConversationKey("teams", "tenant-1", "19:abc@thread.tacv2", "19:abc;messageid=1")
    ) == (
        "tenant-1",
        "19:abc@thread.tacv2",
    )


async def test_secret_in_a_passage_is_redacted_before_premium() -> None:
    secret = "AKIAIOSFODNN7EXAMPLE"
    leaky = Passage(
        source="/docs",
        document="ops.md",
        title="Ops",
        heading="",
        url="ops.md",
        text=f"The deploy key is {secret}.",
        score=0.8,
    )
    premium_model = ScriptedModel(reply="Use the key [1].", name="gpt-4.1")
    bot, _ = make(
        ScriptedModel(), FixedKnowledge([leaky]), Premium(model=premium_model, allowed_users=None)
    )
    sink = await ask(bot, "/premium which deploy key do we use?")
    sent = "\n".join(t.content for t in premium_model.calls[0])
    assert secret not in sent and "Ops" in sent
    assert [c.number for c in sink.citations] == [1]


async def test_search_lists_documents_without_a_model_call() -> None:
    model = ScriptedModel()
    bot, _ = make(model, FixedKnowledge([DEPLOY, ERRORS]))
    sink = await ask(bot, "/search rollback")
    assert model.calls == []
    assert f"1. [Deploy runbook › Rollback]({DEPLOY.url})" in sink.text
    assert "2. [Error codes]" in sink.text and "ERR_DB_042" in sink.text


async def test_search_without_knowledge_or_words_explains() -> None:
    bot, _ = make(ScriptedModel(), None)
    assert (await ask(bot, "/search rollback")).text == replies.SEARCH_NOT_CONFIGURED
    bot, _ = make(ScriptedModel(), FixedKnowledge([DEPLOY]))
    assert (await ask(bot, "/search")).text == replies.EMPTY_QUESTION
    bot, _ = make(ScriptedModel(), FixedKnowledge(error=KnowledgeUnavailable("down")))
    assert (await ask(bot, "/search x")).text == replies.SEARCH_UNAVAILABLE


@pytest.mark.parametrize(
    ("chunks", "shown"),
    [
        (["See [", "1] and [", "3]."], "See [1] and ."),
        (["a [1", ", 2", ", 5] b"], "a [1][2] b"),
        (["x = items[", "3]"], "x = items[3]"),
        (["```\nv = a[7]\n```", " [7]"], "```\nv = a[7]\n``` "),
        (["use `a[9]` [2]"], "use `a[9]` [2]"),
        (["trailing ["], "trailing ["),
    ],
)
def test_marker_filter(chunks: list[str], shown: str) -> None:
    markers = MarkerFilter({1, 2})
    text = "".join(markers.feed(c) for c in chunks) + markers.flush()
    assert text == shown


async def test_the_ledger_records_passages_and_retrieval_time(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    state = local_state(ttl_seconds=600)

    def bot(retriever: Retriever | None) -> Assistant:
        return Assistant(
            state=state,
            local_model=ScriptedModel(reply="Use rollback [1]."),
            premium=None,
            premium_model_name="gpt-4.1",
            ledger=ledger,
            system_prompt="be brief",
            max_input_chars=1000,
            retriever=retriever,
        )

    await ask(bot(Retriever(knowledge=FixedKnowledge([DEPLOY, ERRORS]))), "how to roll back?")
    await ask(bot(None), "how to roll back?")
    grounded, plain = sorted(await recorded(ledger_engine), key=lambda r: r.passages, reverse=True)
    assert grounded.passages == 2 and grounded.retrieval_ms is not None
    assert plain.passages == 0 and plain.retrieval_ms is None
