"""Pure translation of Slack payloads into the core's values (unit-tested on fixtures)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from adapters.wire.jsonbody import MalformedJson, json_object
from bot.conversation import ConversationKey, IncomingMessage

PLATFORM = "slack"
# Message subtypes that are a person writing; everything else (edits, deletions, joins,
# bot messages, topic changes...) is ignored.
_PERSON_SUBTYPES = {None, "file_share", "thread_broadcast"}
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")

Kind = Literal["mention", "direct", "thread_reply"]


@dataclass(frozen=True, slots=True)
class SlackInbound:
    """A Slack message the bot may answer, with where its reply goes."""

    message: IncomingMessage
    kind: Kind
    channel: str
    reply_thread_ts: str | None  # None: reply at the top level (a DM's rolling conversation)
    starts_thread: bool  # a top-level mention: the bot owns the thread it starts

    @property
    def key(self) -> ConversationKey:
        """The conversation this message belongs to."""
        return self.message.key


def _unlink(match: re.Match[str]) -> str:
    url, label = match.group(1), match.group(2)
    if not label:
        return url
    # Slack auto-links "example.com" as <http://example.com|example.com>: keep what was typed.
    return label if label in url else f"{label} ({url})"


def to_question_text(text: str, bot_user_id: str) -> str:
    """The text a person meant: the bot's mentions removed, Slack's escaping undone."""
    text = _USER_MENTION.sub(lambda m: "" if m.group(1) == bot_user_id else m.group(0), text)
    return html.unescape(_LINK.sub(_unlink, text)).strip()


def to_inbound(event: dict[str, Any], *, team_id: str, bot_user_id: str) -> SlackInbound | None:
    """Classify an `app_mention` or `message` event; None when the bot must not answer.

    Engaged-thread replies come back as kind "thread_reply": the caller still has to check
    that the thread is the bot's.
    """
    if event.get("type") not in ("app_mention", "message"):
        return None
    if (
        event.get("subtype") not in _PERSON_SUBTYPES
        or event.get("bot_id")
        or event.get("bot_profile")
    ):
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not isinstance(user, str) or not isinstance(channel, str) or not isinstance(ts, str):
        return None
    if user == bot_user_id:
        return None
    raw_text = event.get("text")
    raw_text = raw_text if isinstance(raw_text, str) else ""
    thread_ts = event.get("thread_ts")
    # The thread the message is in (None at the top level and for a thread's own root).
    thread = thread_ts if isinstance(thread_ts, str) and thread_ts != ts else None
    in_thread = thread is not None
    mentioned = {m.group(1) for m in _USER_MENTION.finditer(raw_text)}
    text = to_question_text(raw_text, bot_user_id)
    team = team_id or str(event.get("team") or "")

    if event.get("channel_type") == "im" and event["type"] == "message":
        # A DM's top-level messages are one rolling conversation; a thread is its own.
        key = ConversationKey(PLATFORM, team, channel, thread or "")
        return SlackInbound(
            message=IncomingMessage(key, f"{channel}:{ts}", user, text, True),
            kind="direct",
            channel=channel,
            reply_thread_ts=thread,
            starts_thread=False,
        )
    root = thread or ts
    assert root is not None
    key = ConversationKey(PLATFORM, team, channel, root)
    message = IncomingMessage(key, f"{channel}:{ts}", user, text, False)
    if bot_user_id in mentioned or event["type"] == "app_mention":
        return SlackInbound(message, "mention", channel, root, starts_thread=not in_thread)
    if in_thread and not mentioned:
        return SlackInbound(message, "thread_reply", channel, root, starts_thread=False)
    return None


# -- the shape of a request body, checked before bolt sees it ----------------------------

# Fields without which a slash command cannot be answered (Slack always sends them).
COMMAND_FIELDS = ("command", "team_id", "user_id", "channel_id", "response_url")
# Fields without which a person's message cannot be answered or threaded.
MESSAGE_FIELDS = ("user", "channel", "ts")


class MalformedRequest(ValueError):
    """A correctly signed body that is not a request Slack would send; the reason is safe
    to return to the caller."""


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        return json_object(text, what)
    except MalformedJson as exc:
        raise MalformedRequest(str(exc)) from exc


# The fields bolt (building its context) and this adapter read, by the type Slack documents
# for them; anything else in a payload is passed through unread.
_TEXT_FIELDS = frozenset(
    {
        "type",
        "subtype",
        "ts",
        "thread_ts",
        "text",
        "channel_type",
        "team_id",
        "user_id",
        "channel_id",
        "enterprise_id",
        "api_app_id",
        "bot_id",
        "context_team_id",
        "context_enterprise_id",
        "function_execution_id",
        "bot_access_token",
        "app_installed_team_id",
        "trigger_id",
        "response_url",
        "challenge",
        "token",
    }
)
_NAMED_FIELDS = frozenset({"team", "user", "channel", "enterprise"})  # an id or {"id": ...}
_OBJECT_FIELDS = frozenset(
    {
        "event",
        "message",
        "previous_message",
        "item",
        "assistant_thread",
        "view",
        "function_data",
        "bot_profile",
        "inputs",
    }
)
_NESTED = ("event", "message", "previous_message", "item", "assistant_thread", "view")


def _check_fields(data: dict[str, Any], where: str, depth: int = 0) -> None:
    for name, value in data.items():
        if name in _TEXT_FIELDS and value is not None and not isinstance(value, str):
            raise MalformedRequest(f"`{where}{name}` is not a string")
        if name in _NAMED_FIELDS and value is not None:
            if isinstance(value, dict):
                if not isinstance(value.get("id", ""), str | None):
                    raise MalformedRequest(f"`{where}{name}.id` is not a string")
                _check_fields(value, f"{where}{name}.", depth + 1)
            elif not isinstance(value, str):
                raise MalformedRequest(f"`{where}{name}` is neither an id nor an object")
        if name in _OBJECT_FIELDS and not isinstance(value, dict):
            raise MalformedRequest(f"`{where}{name}` is not an object")
    if "is_enterprise_install" in data and not isinstance(
        data["is_enterprise_install"], bool | str | None
    ):
        raise MalformedRequest(f"`{where}is_enterprise_install` is not a boolean")
    authorizations = data.get("authorizations")
    if authorizations is not None:
        if not isinstance(authorizations, list) or not all(
            isinstance(a, dict) for a in authorizations
        ):
            raise MalformedRequest(f"`{where}authorizations` is not a list of objects")
        for item in authorizations[:1]:
            _check_fields(item, f"{where}authorizations[0].", depth + 1)
    if depth < 3:
        for name in _NESTED:
            if isinstance(data.get(name), dict):
                _check_fields(data[name], f"{where}{name}.", depth + 1)


def _check_event(event: object) -> None:
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise MalformedRequest("`event` is not an object with a type")
    is_person = event["type"] == "app_mention" or (
        event["type"] == "message" and event.get("subtype") is None
    )
    if is_person and not (event.get("bot_id") or event.get("bot_profile")):
        missing = [name for name in MESSAGE_FIELDS if not isinstance(event.get(name), str)]
        if missing:
            raise MalformedRequest(f"{event['type']} event without {', '.join(missing)}")


def check_body(body: bytes, content_type: str) -> None:
    """Nothing when the body is an Events API payload, a slash command or an interactive
    payload of the shape Slack sends; else MalformedRequest (a 400, never a 500 later)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest("the body is not UTF-8") from exc
    if content_type == "application/json" or text.lstrip().startswith("{"):
        data = _json_object(text, "the body")
        if not isinstance(data.get("type"), str):
            raise MalformedRequest("not a Slack event payload (no type)")
        _check_fields(data, "")
        if data["type"] == "event_callback":
            _check_event(data.get("event"))
        elif data["type"] == "url_verification" and not isinstance(data.get("challenge"), str):
            raise MalformedRequest("url_verification without a challenge")
        return
    try:
        form = parse_qs(text, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequest("the body is neither JSON nor a form") from exc
    if "payload" in form:
        payload = _json_object(form["payload"][0], "payload")
        if not isinstance(payload.get("type"), str):
            raise MalformedRequest("payload without a type")
        _check_fields(payload, "payload.")
        return
    if "ssl_check" in form:  # Slack checking the certificate of a slash command's URL
        return
    if "command" not in form:
        raise MalformedRequest("not a Slack form payload")
    missing = [name for name in COMMAND_FIELDS if not form.get(name, [""])[0].strip()]
    if missing:
        raise MalformedRequest(f"slash command without {', '.join(missing)}")
    return
