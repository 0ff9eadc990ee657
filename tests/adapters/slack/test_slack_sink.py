"""The Slack reply sink: a real SlackReplySink talking to the fake Slack Web API through
slack_sdk, as the core drives it (text, then ``cite`` for sources, then ``close``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.ephemeral import EphemeralSink
from adapters.slack.sink import SlackReplySink, StreamingSupport
from bot.conversation import Citation
from tests.fakes.slack import FakeSlack

CHANNEL = "C0CHANNEL"
THREAD = "1700000000.000001"
DEPLOY = Citation(1, "Deploy runbook", "https://wiki.example.com/deploy", "Run make deploy.")
ROLLBACK = Citation(2, "Rollback <guide>", "https://wiki.example.com/rollback", "Undo it.")
ANSWER = "Run `make deploy` [1], and roll back with **make undo** [2]."


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.stop()


def _sink(slack: FakeSlack, *, native: bool, limit: int = 3500) -> SlackReplySink:
    slack.refuse_streaming = not native
    return SlackReplySink(
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
        channel=CHANNEL,
        thread_ts=THREAD,
        team_id=slack.team_id,
        user_id="U0PERSON",
        streaming=StreamingSupport(native=native),
        limit=limit,
    )


async def _answer(
    sink: SlackReplySink, text: str, citations: list[Citation], searched: bool
) -> None:
    for start in range(0, len(text), 7):
        await sink.write(text[start : start + 7])
    await sink.cite(citations, searched=searched, answer_id="a1")
    await sink.close()


def _context_texts(blocks: tuple[dict, ...]) -> list[str]:
    return [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]


async def test_a_streamed_answer_lists_its_sources_in_stop_streams_blocks(
    slack: FakeSlack,
) -> None:
    await _answer(_sink(slack, native=True), ANSWER, [DEPLOY, ROLLBACK], searched=False)
    (message,) = slack.messages(CHANNEL, THREAD)
    assert message.is_stream and not message.streaming
    assert message.text == ANSWER  # markers intact in the streamed text
    assert _context_texts(message.blocks) == [
        "*Sources:*",
        "[1] <https://wiki.example.com/deploy|Deploy runbook (wiki.example.com)>",
        "[2] <https://wiki.example.com/rollback|Rollback &lt;guide&gt; (wiki.example.com)>",
    ]
    (stop,) = slack.calls_to("chat.stopStream")
    assert stop.args["blocks"] == list(message.blocks)


async def test_an_updated_answer_keeps_its_text_and_shows_sources_below(slack: FakeSlack) -> None:
    await _answer(_sink(slack, native=False), ANSWER, [DEPLOY], searched=False)
    (message,) = slack.messages(CHANNEL, THREAD)
    last = slack.calls_to("chat.update")[-1]
    assert last.args["text"] == "Run `make deploy` [1], and roll back with *make undo* [2]."
    section, context, feedback = message.blocks
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": last.args["text"]}}
    assert feedback["type"] == "context_actions"
    assert _context_texts((context,)) == [
        "*Sources:*",
        "[1] <https://wiki.example.com/deploy|Deploy runbook (wiki.example.com)>",
    ]


async def test_sources_the_answer_did_not_cite_are_labelled_searched(slack: FakeSlack) -> None:
    await _answer(_sink(slack, native=True), "No idea, sorry.", [DEPLOY], searched=True)
    (message,) = slack.messages(CHANNEL, THREAD)
    assert _context_texts(message.blocks)[0] == "*Searched:*"


@pytest.mark.parametrize("native", [True, False])
async def test_many_sources_respect_slacks_block_limits(slack: FakeSlack, native: bool) -> None:
    citations = [
        Citation(n, f"Document {n} " + "long title " * 30, f"https://x.io/{n}", "")
        for n in range(1, 21)
    ]
    await _answer(_sink(slack, native=native), ANSWER, citations, searched=False)
    (message,) = slack.messages(CHANNEL, THREAD)
    contexts = [b for b in message.blocks if b["type"] == "context"]
    assert all(len(b["elements"]) <= 10 for b in contexts)
    texts = _context_texts(message.blocks)
    assert len(texts) == 21 and all(len(t) <= 3000 for t in texts)
    assert all(
        t.startswith(f"[{n}] <https://x.io/{n}|Document {n} ") for n, t in enumerate(texts[1:], 1)
    )


async def test_a_long_answer_gets_its_sources_under_its_last_message(slack: FakeSlack) -> None:
    text = "\n\n".join(f"Paragraph {i} says something [1]." for i in range(30))
    await _answer(_sink(slack, native=False, limit=200), text, [DEPLOY], searched=False)
    messages = slack.messages(CHANNEL, THREAD)
    assert len(messages) > 3
    assert [bool(m.blocks) for m in messages] == [False] * (len(messages) - 1) + [True]
    joined = (
        "\n\n".join(m.text for m in messages[:-1]) + "\n\n" + messages[-1].blocks[0]["text"]["text"]
    )
    assert all(f"Paragraph {i} says something [1]." in joined for i in range(30))


async def test_a_relative_link_is_shown_as_text_not_as_a_broken_link(slack: FakeSlack) -> None:
    readme = Citation(3, "README", "docs/README.md", "")
    await _answer(_sink(slack, native=True), "See [3].", [readme], searched=False)
    (message,) = slack.messages(CHANNEL, THREAD)
    assert _context_texts(message.blocks)[1] == "[3] README (docs/README.md)"


async def test_a_slash_command_answer_lists_its_sources_to_the_asker() -> None:
    sent: list[dict[str, str]] = []

    async def respond(**kwargs: str) -> None:
        sent.append(kwargs)

    sink = EphemeralSink(respond=respond)
    await sink.write("Use make deploy [1].")
    await sink.cite([DEPLOY], searched=False, answer_id="a1")
    await sink.close()
    assert sent == [
        {
            "text": "Use make deploy [1].\n\n*Sources:*\n"
            "[1] <https://wiki.example.com/deploy|Deploy runbook (wiki.example.com)>",
            "response_type": "ephemeral",
        }
    ]


async def test_an_answer_updated_in_several_steps_shows_each_piece_once(
    slack: FakeSlack,
) -> None:
    sink = _sink(slack, native=False)
    await sink.write("Hello")
    await slack.wait_for(lambda f: bool(f.messages(CHANNEL, THREAD)), timeout=5)
    await sink.write(" world")
    await sink.close()
    assert [m.text for m in slack.messages(CHANNEL, THREAD)] == ["Hello world"]


# -- the thread's status line while the answer is not there yet ------------------------------


def _status_calls(slack: FakeSlack) -> list[dict]:
    return [c.args for c in slack.calls_to("assistant.threads.setStatus")]


async def test_a_slow_first_token_shows_thinking_until_the_answer_clears_it(
    slack: FakeSlack,
) -> None:
    sink = _sink(slack, native=True)
    await slack.wait_for(lambda f: f.status(CHANNEL, THREAD) == "is thinking…", timeout=5)
    assert len(slack.loading_messages(CHANNEL, THREAD)) > 1  # rotating messages
    await sink.write("Here it is.")
    await sink.close()
    assert slack.status(CHANNEL, THREAD) == ""
    assert [m.text for m in slack.messages(CHANNEL, THREAD)] == ["Here it is."]


async def test_a_quick_answer_sets_no_status(slack: FakeSlack) -> None:
    sink = _sink(slack, native=True)
    await sink.write("Quick.")
    await sink.close()
    assert _status_calls(slack) == []


async def test_the_place_in_line_is_the_status_line_and_no_message(slack: FakeSlack) -> None:
    sink = _sink(slack, native=False)
    await sink.status("Queued — #2 in line.")
    assert slack.loading_messages(CHANNEL, THREAD) == ["Queued — #2 in line."]
    assert slack.messages(CHANNEL, THREAD) == []
    await sink.write("Answer.")
    await sink.close()
    assert slack.status(CHANNEL, THREAD) == ""
    assert [m.text for m in slack.messages(CHANNEL, THREAD)] == ["Answer."]
    assert slack.calls_to("chat.delete") == []


async def test_without_a_thread_status_the_place_in_line_is_a_message_the_answer_becomes(
    slack: FakeSlack,
) -> None:
    slack.fail_next("assistant.threads.setStatus", error="missing_scope", status=200)
    sink = _sink(slack, native=False)
    await sink.status("Queued — #1 in line.")
    assert [m.text for m in slack.messages(CHANNEL, THREAD)] == ["_Queued — #1 in line._"]
    await sink.write("Answer.")
    await sink.close()
    assert [m.text for m in slack.messages(CHANNEL, THREAD)] == ["Answer."]


async def test_a_status_left_without_an_answer_is_taken_away(slack: FakeSlack) -> None:
    sink = _sink(slack, native=True)
    await sink.status("Queued — #1 in line.")
    await sink.close()
    assert slack.status(CHANNEL, THREAD) == ""
    assert slack.messages(CHANNEL, THREAD) == []
