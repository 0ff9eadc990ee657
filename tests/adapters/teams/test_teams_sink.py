"""The Teams reply sink's sources: a real TeamsReplySink sending through botbuilder's
CloudAdapter to the fake Bot Connector, driven as the core does (text, ``cite``, ``close``)."""

from __future__ import annotations

from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from adapters.teams.sink import Outbox, TeamsReplySink
from bot.conversation import Citation
from tests.support.teams import (
    APP_ID,
    CHANNEL_THREAD,
    FAST,
    PERSONAL,
    SQLITE_ONLY,
    TeamsBotUnderTest,
)

# The running bot and its fakes, as the Teams end-to-end tests set them up.

DEPLOY = Citation(
    1, "Deploy runbook: " + "how we ship " * 10, "https://wiki.example.com/deploy", "x " * 200
)
ROLLBACK = Citation(2, "Rollback guide", "https://wiki.example.com/rollback", "Undo with make.")
README = Citation(3, "README", "docs/README.md", "The readme.")
ANSWER = "Ship with `make deploy` [1]. Undo with **make undo** [2]."


async def _answer(
    bot: TeamsBotUnderTest,
    name: str,
    *,
    streaming: bool,
    text: str = ANSWER,
    citations: list[Citation] | None = None,
    searched: bool = False,
) -> None:
    reference = TurnContext.get_conversation_reference(Activity().deserialize(bot.message(name)))

    async def turn(context: TurnContext) -> None:
        sink = TeamsReplySink(outbox=Outbox(context, FAST), streaming=streaming, options=FAST)
        for start in range(0, len(text), 9):
            await sink.write(text[start : start + 9])
        await sink.cite(
            [DEPLOY, ROLLBACK] if citations is None else citations,
            searched=searched,
            answer_id="a1",
        )
        await sink.close()

    await bot.teams.adapter.continue_conversation(reference, turn, bot_app_id=APP_ID)


def _positions(citations: list[dict]) -> list[int]:
    return [c["position"] for c in citations]


@SQLITE_ONLY
async def test_a_streamed_answer_ends_with_its_citations_and_the_ai_label(
    teams_bot: TeamsBotUnderTest,
) -> None:
    await _answer(teams_bot, "personal_message", streaming=True)
    (shown,) = teams_bot.connector.shown(PERSONAL)
    assert shown.streamed and shown.final
    assert shown.text == ANSWER  # the [n] markers Teams turns into pop-ups
    assert shown.ai_generated
    assert _positions(shown.citations) == [1, 2]
    final = teams_bot.connector.stream_calls(PERSONAL)[-1]
    assert (final.stream_info or {}).get("streamType") == "final"
    entity = final.ai_entity
    assert entity is not None
    assert {k: entity[k] for k in ("@type", "@context", "@id", "additionalType")} == {
        "@type": "Message",
        "@context": "https://schema.org",
        "@id": "",
        "additionalType": ["AIGeneratedContent"],
    }
    first = entity["citation"][0]
    assert first["@type"] == "Claim"
    appearance = first["appearance"]
    assert appearance["@type"] == "DigitalDocument"
    assert appearance["url"] == "https://wiki.example.com/deploy"
    assert len(appearance["name"]) <= 80 and appearance["name"].startswith("Deploy runbook")
    assert len(appearance["abstract"]) <= 160


@SQLITE_ONLY
async def test_a_channel_answer_is_one_message_with_its_citations(
    teams_bot: TeamsBotUnderTest,
) -> None:
    await _answer(teams_bot, "channel_mention", streaming=False)
    (shown,) = teams_bot.connector.shown(CHANNEL_THREAD)
    assert shown.text == ANSWER and shown.ai_generated
    assert _positions(shown.citations) == [1, 2]


@SQLITE_ONLY
async def test_at_most_twenty_citations_and_only_web_links_as_urls(
    teams_bot: TeamsBotUnderTest,
) -> None:
    many = [Citation(n, f"Doc {n}", f"https://x.io/{n}", "") for n in range(1, 25)]
    text = "Everything: " + " ".join(f"[{n}]" for n in range(1, 25)) + " [3]"
    many[2] = README
    await _answer(teams_bot, "channel_mention", streaming=False, text=text, citations=many)
    (shown,) = teams_bot.connector.shown(CHANNEL_THREAD)
    assert _positions(shown.citations) == list(range(1, 21))
    assert "url" not in shown.citations[2]["appearance"]  # a repository path, not a web link


@SQLITE_ONLY
async def test_sources_searched_but_not_cited_are_a_closing_line(
    teams_bot: TeamsBotUnderTest,
) -> None:
    await _answer(
        teams_bot,
        "personal_message",
        streaming=True,
        text="I could not find that.",
        citations=[ROLLBACK, README],
        searched=True,
    )
    (shown,) = teams_bot.connector.shown(PERSONAL)
    assert shown.text == (
        "I could not find that.\n\n"
        "*Searched:* [Rollback guide (wiki.example.com)](https://wiki.example.com/rollback)"
        " · README"
    )
    assert shown.ai_generated and shown.citations == []


@SQLITE_ONLY
async def test_a_long_answer_carries_each_citation_on_the_message_showing_its_marker(
    teams_bot: TeamsBotUnderTest,
) -> None:
    teams_bot.teams.options.message_limit = 120
    first = "\n\n".join(f"Step {i}: deploy it [1]." for i in range(6))
    second = "\n\n".join(f"Step {i}: roll back [2]." for i in range(6, 12))
    options = teams_bot.teams.options
    reference = TurnContext.get_conversation_reference(
        Activity().deserialize(teams_bot.message("channel_mention"))
    )

    async def turn(context: TurnContext) -> None:
        sink = TeamsReplySink(outbox=Outbox(context, options), streaming=False, options=options)
        await sink.write(first + "\n\n" + second)
        await sink.cite([DEPLOY, ROLLBACK], searched=False, answer_id="a1")
        await sink.close()

    await teams_bot.teams.adapter.continue_conversation(reference, turn, bot_app_id=APP_ID)
    shown = teams_bot.connector.shown(CHANNEL_THREAD)
    assert len(shown) > 1 and all(m.ai_generated for m in shown)
    for message in shown:
        expected = [n for n in (1, 2) if f"[{n}]" in message.text]
        assert _positions(message.citations) == expected


@SQLITE_ONLY
async def test_an_answer_without_sources_still_carries_the_ai_label(
    teams_bot: TeamsBotUnderTest,
) -> None:
    await _answer(teams_bot, "personal_message", streaming=True, text="Hello!", citations=[])
    (shown,) = teams_bot.connector.shown(PERSONAL)
    assert shown.text == "Hello!" and shown.ai_generated and shown.citations == []


@SQLITE_ONLY
async def test_a_reply_the_core_did_not_cite_for_has_no_ai_label(
    teams_bot: TeamsBotUnderTest,
) -> None:
    reference = TurnContext.get_conversation_reference(
        Activity().deserialize(teams_bot.message("channel_mention"))
    )

    async def turn(context: TurnContext) -> None:
        sink = TeamsReplySink(outbox=Outbox(context, FAST), streaming=False, options=FAST)
        await sink.write("Commands: /help, /reset")
        await sink.close()

    await teams_bot.teams.adapter.continue_conversation(reference, turn, bot_app_id=APP_ID)
    (shown,) = teams_bot.connector.shown(CHANNEL_THREAD)
    assert not shown.ai_generated
