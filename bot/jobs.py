"""The kinds of accepted work, as typed and versioned values, and their one wire form.

A job crosses processes and releases: it is queued by one version of the bot and may be
answered by the next one (a rolling upgrade) or by another replica. So each kind is a frozen
dataclass with a ``version``; ``to_job`` writes it as JSON-ready data and ``from_job`` reads
it back, including the older versions this code still knows. A job this code cannot read
(an unknown version, a missing or mistyped field) raises ``UnreadableJob``: the queue sets it
aside and its asker is told to ask again, through ``ReplyTo``, which is kept in the same
place in every version so that even an unreadable job can be answered.

Versions:
- 0: the untyped dicts written before the kinds were typed (no ``kind`` or ``version``):
  ``{"platform": "slack", "type": "event" | "command", ...}`` and
  ``{"platform": "teams", "activity": {...}}``. Read, never written.
- 1: ``{"kind": ..., "version": 1, "reply_to": {...}, <the kind's fields>}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

VERSION = 1  # what this code writes


class UnreadableJob(ValueError):
    """A queued job this code cannot answer; the reason is for the log and the metrics."""


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """Where to tell the asker something when their job cannot be answered. Its wire form
    is the same in every job version."""

    platform: str
    channel: str = ""  # Slack: the channel
    thread: str = ""  # Slack: the thread's root ts ("" at a DM's top level)
    response_url: str = ""  # Slack slash commands: where an ephemeral reply goes
    conversation: dict[str, Any] = field(default_factory=dict)  # Teams: the activity's address

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v}

    @classmethod
    def from_wire(cls, data: object) -> ReplyTo | None:
        """Read leniently (it serves jobs that are otherwise unreadable); None if unusable."""
        if not isinstance(data, dict) or not isinstance(data.get("platform"), str):
            return None
        text = {k: data[k] for k in ("channel", "thread", "response_url") if k in data}
        if not all(isinstance(v, str) for v in text.values()):
            return None
        conversation = data.get("conversation", {})
        if not isinstance(conversation, dict):
            return None
        return cls(platform=data["platform"], conversation=conversation, **text)


@dataclass(frozen=True, slots=True)
class SlackEvent:
    """A Slack message event (mention, DM, reply in an engaged thread) to answer."""

    kind: ClassVar[str] = "slack.event"
    platform: ClassVar[str] = "slack"

    event: dict[str, Any]
    team_id: str
    bot_user_id: str
    reply_to: ReplyTo
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class SlackCommand:
    """A Slack slash command to answer."""

    kind: ClassVar[str] = "slack.command"
    platform: ClassVar[str] = "slack"

    command: dict[str, Any]
    bot_user_id: str
    reply_to: ReplyTo
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class TeamsActivity:
    """A Teams message activity (authenticated when it was queued) to answer."""

    kind: ClassVar[str] = "teams.activity"
    platform: ClassVar[str] = "teams"

    activity: dict[str, Any]
    reply_to: ReplyTo
    version: int = VERSION


Work = SlackEvent | SlackCommand | TeamsActivity
KINDS: dict[str, type[SlackEvent] | type[SlackCommand] | type[TeamsActivity]] = {
    k.kind: k for k in (SlackEvent, SlackCommand, TeamsActivity)
}


def to_job(work: Work) -> dict[str, Any]:
    """The wire form of a job (JSON-ready)."""
    data: dict[str, Any] = {"kind": work.kind, "version": work.version}
    for f in dataclasses.fields(work):
        value = getattr(work, f.name)
        data[f.name] = value.to_wire() if isinstance(value, ReplyTo) else value
    return data


def from_job(data: object) -> Work:
    """Read a job written by this or an older version; UnreadableJob otherwise."""
    if not isinstance(data, dict):
        raise UnreadableJob("the job is not an object")
    if "kind" not in data and "version" not in data:
        return _from_version_0(data)
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UnreadableJob("the job has no version")
    kind = KINDS.get(str(data.get("kind")))
    if kind is None:
        raise UnreadableJob(f"unknown job kind {str(data.get('kind'))[:40]!r}")
    if version != 1:
        raise UnreadableJob(f"{kind.kind} job of unknown version {version}")
    reply_to = ReplyTo.from_wire(data.get("reply_to"))
    if reply_to is None:
        raise UnreadableJob(f"{kind.kind} job without a usable reply_to")
    values: dict[str, Any] = {"reply_to": reply_to, "version": version}
    for f in dataclasses.fields(kind):
        if f.name in values:
            continue
        if f.name not in data:
            raise UnreadableJob(f"{kind.kind} job without {f.name!r}")
        expected = dict if f.type == "dict[str, Any]" else str
        if not isinstance(data[f.name], expected):
            raise UnreadableJob(f"{kind.kind} job whose {f.name!r} is not a {expected.__name__}")
        values[f.name] = data[f.name]
    return kind(**values)


def reply_to_of(data: object) -> ReplyTo | None:
    """Where to tell the asker of a job, read leniently from any version's wire form (for a
    job ``from_job`` refused); None when nothing usable is there."""
    if not isinstance(data, dict):
        return None
    if "reply_to" in data:
        return ReplyTo.from_wire(data["reply_to"])
    try:
        return _from_version_0(data).reply_to
    except UnreadableJob:
        return None


def _from_version_0(data: dict[str, Any]) -> Work:
    """The untyped dicts queued before jobs had kinds."""
    platform, type_ = data.get("platform"), data.get("type")
    if platform == "slack" and type_ == "event":
        event = _object(data, "event")
        channel, ts = event.get("channel"), event.get("ts")
        thread = event.get("thread_ts") or ts
        if not isinstance(channel, str) or not isinstance(thread, str):
            raise UnreadableJob("version 0 slack event without channel and ts")
        return SlackEvent(
            event=event,
            team_id=str(data.get("team_id") or ""),
            bot_user_id=str(data.get("bot_user_id") or ""),
            reply_to=ReplyTo("slack", channel=channel, thread=thread),
            version=0,
        )
    if platform == "slack" and type_ == "command":
        command = _object(data, "command")
        return SlackCommand(
            command=command,
            bot_user_id=str(data.get("bot_user_id") or ""),
            reply_to=ReplyTo(
                "slack",
                channel=str(command.get("channel_id") or ""),
                response_url=str(command.get("response_url") or ""),
            ),
            version=0,
        )
    if platform == "teams":
        activity = _object(data, "activity")
        return TeamsActivity(
            activity=activity, reply_to=ReplyTo("teams", conversation=activity), version=0
        )
    raise UnreadableJob(f"version 0 job of unknown platform/type {platform!r}/{type_!r}")


def _object(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise UnreadableJob(f"version 0 job without {name!r}")
    return value
