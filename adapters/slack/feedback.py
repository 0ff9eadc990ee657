"""Slack feedback buttons under model answers: the block (a ``context_actions`` block with a
``feedback_buttons`` element) and the click that comes back (a ``block_actions`` payload)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.votes import VOTES, VoteValue

ACTION_ID = "answer_feedback"


def feedback_block(answer_id: str) -> dict[str, Any]:
    """The 👍 / 👎 buttons under one answer; each button's value names the answer."""
    return {
        "type": "context_actions",
        "block_id": f"feedback:{answer_id}",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": ACTION_ID,
                "positive_button": {
                    "text": {"type": "plain_text", "text": "👍"},
                    "accessibility_label": "This answer was helpful",
                    "value": f"up:{answer_id}",
                },
                "negative_button": {
                    "text": {"type": "plain_text", "text": "👎"},
                    "accessibility_label": "This answer was not helpful",
                    "value": f"down:{answer_id}",
                },
            }
        ],
    }


@dataclass(frozen=True, slots=True)
class FeedbackClick:
    """A click on an answer's feedback buttons."""

    answer_id: str
    vote: VoteValue
    team: str
    user: str
    channel: str
    thread_ts: str | None


def to_feedback_click(body: dict[str, Any], action: dict[str, Any]) -> FeedbackClick | None:
    """Read one ``block_actions`` payload's feedback action; None when it is not one of ours
    (an unknown value, no user)."""
    value = action.get("value")
    if not isinstance(value, str):
        return None
    vote, _, answer_id = value.partition(":")
    if vote not in VOTES or not answer_id or len(answer_id) > 64:
        return None
    user = body.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return None
    team = body.get("team")
    team_id = team.get("id") if isinstance(team, dict) else None
    if not isinstance(team_id, str):
        team_id = str(user.get("team_id") or "") if isinstance(user, dict) else ""
    found = body.get("container")
    container: dict[str, Any] = found if isinstance(found, dict) else {}
    channel = body.get("channel")
    channel_id = channel.get("id") if isinstance(channel, dict) else container.get("channel_id")
    thread_ts = container.get("thread_ts")
    return FeedbackClick(
        answer_id=answer_id,
        vote="up" if vote == "up" else "down",
        team=team_id,
        user=user_id,
        channel=str(channel_id or ""),
        thread_ts=thread_ts if isinstance(thread_ts, str) else None,
    )
