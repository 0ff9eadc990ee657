"""Slack payloads built from the documented samples in tests/fixtures/slack."""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.support import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "slack"
TEAM = "T123ABC456"
BOT_USER = "U0LAN0Z89"
BOT_ID = "B0LAN0Z89"
USER = "U123ABC456"
CHANNEL = "C123ABC456"


def load(name: str) -> dict[str, Any]:
    """A fresh copy of a fixture."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def event_body(name: str, event_id: str | None = None, **event: Any) -> dict[str, Any]:
    """An Events API envelope from a fixture, with event fields overridden."""
    body = load(name)
    body["event"].update(event)
    for key in [k for k, v in event.items() if v is None]:
        del body["event"][key]
    if event_id is not None:
        body["event_id"] = event_id
    return body


def mention(
    text: str,
    ts: str,
    *,
    thread_ts: str | None = None,
    user: str = USER,
    channel: str = CHANNEL,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An app_mention event; `text` gets the bot's mention in front."""
    return event_body(
        "app_mention",
        event_id or f"Ev{ts.replace('.', '')}A",
        text=f"<@{BOT_USER}> {text}",
        ts=ts,
        event_ts=ts,
        thread_ts=thread_ts,
        user=user,
        channel=channel,
    )


def channel_message(
    text: str,
    ts: str,
    *,
    thread_ts: str | None = None,
    user: str = USER,
    channel: str = CHANNEL,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A message.channels event (also sent for mentions, alongside app_mention)."""
    return event_body(
        "message_channels",
        event_id or f"Ev{ts.replace('.', '')}M",
        text=text,
        ts=ts,
        event_ts=ts,
        thread_ts=thread_ts,
        user=user,
        channel=channel,
    )


def dm(
    text: str,
    ts: str,
    *,
    thread_ts: str | None = None,
    user: str = USER,
    channel: str = "D024BE91L",
    event_id: str | None = None,
) -> dict[str, Any]:
    """A message.im event."""
    return event_body(
        "message_im",
        event_id or f"Ev{ts.replace('.', '')}D",
        text=text,
        ts=ts,
        event_ts=ts,
        thread_ts=thread_ts,
        user=user,
        channel=channel,
    )


def slash(
    command: str,
    text: str,
    *,
    response_url: str,
    channel: str = CHANNEL,
    channel_name: str = "test",
    trigger_id: str = "1334.7384.abc",
) -> dict[str, str]:
    """A slash command's form fields."""
    form = load("slash_command")
    form.update(
        command=command,
        text=text,
        response_url=response_url,
        channel_id=channel,
        channel_name=channel_name,
        trigger_id=trigger_id,
    )
    return form
