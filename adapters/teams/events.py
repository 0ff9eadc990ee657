"""Pure translation of Bot Framework activities from Teams into the core's values.

Unit-tested over JSON fixtures shaped like Microsoft's documented samples. The core never
sees an Activity: it gets an IncomingMessage, and what the adapter needs to reply (the
conversation reference) stays here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ConversationReference

from bot.conversation import ConversationKey, IncomingMessage
from bot.votes import VoteValue

PLATFORM = "teams"
PERSONAL = "personal"
# `<at>Name</at>` is how Teams writes a mention into the text; the entity says whom it names.
_AT = re.compile(r"<at(?:\s[^>]*)?>(.*?)</at>", re.IGNORECASE | re.DOTALL)
_THREAD_MARK = ";messageid="


@dataclass(frozen=True, slots=True)
class TeamsInbound:
    """A Teams message the bot answers, with what is needed to reply to it."""

    message: IncomingMessage
    reference: ConversationReference
    activity_id: str
    conversation_type: str  # "personal", "groupChat", "channel" ("" outside Teams)
    service_url: str

    @property
    def streams(self) -> bool:
        """Teams streams bot messages in one-on-one chats only."""
        return self.conversation_type == PERSONAL


def _props(entity: Any) -> dict[str, Any]:
    # botbuilder's Entity keeps the fields it does not declare in additional_properties.
    props = getattr(entity, "additional_properties", None)
    return props if isinstance(props, dict) else {}


def _bot_mentions(activity: Activity) -> tuple[bool, list[str]]:
    """Whether the bot is mentioned, and the `<at>` texts that mention it."""
    bot_id = activity.recipient.id if activity.recipient else None
    texts: list[str] = []
    mentioned = False
    for entity in activity.entities or []:
        if getattr(entity, "type", None) != "mention":
            continue
        props = _props(entity)
        who = props.get("mentioned")
        if isinstance(who, dict) and bot_id and who.get("id") == bot_id:
            mentioned = True
            if isinstance(props.get("text"), str) and props["text"]:
                texts.append(props["text"])
    return mentioned, texts


def to_question_text(activity: Activity) -> str:
    """The text a person meant: only the bot's `<at>` mention removed, other mentions
    reduced to the name (botbuilder's remove_recipient_mention would also delete the bot's
    name wherever else it appears)."""
    text = activity.text if isinstance(activity.text, str) else ""
    _, bot_texts = _bot_mentions(activity)
    for mention in bot_texts:
        text = text.replace(mention, " ")
    bot_name = activity.recipient.name if activity.recipient else None
    if bot_name:
        # Some clients send the mention without an entity; remove it by the bot's name only.
        text = re.sub(
            rf"<at(?:\s[^>]*)?>\s*{re.escape(bot_name)}\s*</at>", " ", text, flags=re.IGNORECASE
        )
    text = _AT.sub(lambda m: m.group(1), text)
    return text.replace("&nbsp;", " ").replace("\xa0", " ").strip()


def _tenant(activity: Activity) -> str:
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = data.get("tenant")
    if isinstance(tenant, dict) and isinstance(tenant.get("id"), str):
        return str(tenant["id"])
    conversation = activity.conversation
    # Teams spells it "tenantId"; botbuilder's model reads "tenantID".
    tenant_id = getattr(conversation, "tenant_id", None) or _props(conversation).get("tenantId")
    return str(tenant_id or "")


def _is_from_bot(activity: Activity) -> bool:
    sender = activity.from_property
    if sender is None:
        return True
    if getattr(sender, "role", None) == "bot":
        return True
    sender_id = str(sender.id or "")
    recipient_id = str(activity.recipient.id or "") if activity.recipient else ""
    # Teams bot accounts are "28:<app id>"; people are "29:..." (or "8:orgid:..." elsewhere).
    return sender_id == recipient_id or sender_id.startswith("28:")


def conversation_key(activity: Activity) -> ConversationKey:
    """One conversation = (tenant, conversation.id); a channel thread's id carries
    `;messageid=` of its root post, so each thread is its own conversation."""
    conversation_id = str(activity.conversation.id)
    channel = conversation_id.split(_THREAD_MARK, 1)[0]
    return ConversationKey(PLATFORM, _tenant(activity), channel, conversation_id)


def to_inbound(activity: Activity) -> TeamsInbound | None:
    """Classify one authenticated activity; None when the bot must not answer it.

    Answered: people's messages in a personal chat, and messages that @-mention the bot
    in channels and group chats. Ignored: edits, deletions, reactions, joins and every
    other activity type, and messages from bots (this one included).
    """
    if activity.type != "message":
        return None
    if activity.conversation is None or not activity.conversation.id or not activity.id:
        return None
    if not activity.service_url or _is_from_bot(activity):
        return None
    conversation_type = str(getattr(activity.conversation, "conversation_type", None) or "")
    mentioned, _ = _bot_mentions(activity)
    if conversation_type in ("channel", "groupChat") and not mentioned:
        # Only mentions reach a bot in channels (unless it was granted more): answer only those.
        return None
    sender = activity.from_property
    assert sender is not None
    user = str(getattr(sender, "aad_object_id", None) or sender.id or "")
    key = conversation_key(activity)
    message = IncomingMessage(
        key=key,
        # Channel message ids are timestamps, unique only within their conversation.
        message_id=f"{activity.conversation.id}:{activity.id}",
        sender=user,
        text=to_question_text(activity),
        is_direct=conversation_type == PERSONAL,
    )
    return TeamsInbound(
        message=message,
        reference=TurnContext.get_conversation_reference(activity),
        activity_id=str(activity.id),
        conversation_type=conversation_type,
        service_url=str(activity.service_url),
    )


# -- feedback ---------------------------------------------------------------------------

FEEDBACK_INVOKE = "message/submitAction"
_REACTIONS = {"like": "up", "dislike": "down"}


@dataclass(frozen=True, slots=True)
class TeamsFeedback:
    """A vote given with Teams' feedback buttons on one of the bot's messages."""

    message: str  # "<channel or chat id>:<activity id>" of the message voted on
    vote: VoteValue
    tenant: str
    user: str


def answer_message_ref(key: ConversationKey, activity_id: str) -> str:
    """How a posted answer message is named for feedback: its conversation (a channel's id
    without `;messageid=`) and its activity id (unique only within that conversation)."""
    return f"{key.channel}:{activity_id}"


def to_feedback(activity: Activity) -> TeamsFeedback | None:
    """Read a ``message/submitAction`` invoke from Teams' feedback loop; None for any other
    activity or a value of another shape."""
    if activity.type != "invoke" or activity.name != FEEDBACK_INVOKE:
        return None
    value = activity.value if isinstance(activity.value, dict) else {}
    action = value.get("actionValue")
    if value.get("actionName") != "feedback" or not isinstance(action, dict):
        return None
    vote = _REACTIONS.get(str(action.get("reaction") or ""))
    if vote is None or activity.conversation is None or not activity.conversation.id:
        return None
    if not isinstance(activity.reply_to_id, str) or not activity.reply_to_id:
        return None
    sender = activity.from_property
    user = str(getattr(sender, "aad_object_id", None) or getattr(sender, "id", None) or "")
    if not user:
        return None
    key = conversation_key(activity)
    return TeamsFeedback(
        message=answer_message_ref(key, activity.reply_to_id),
        vote="up" if vote == "up" else "down",
        tenant=key.workspace,
        user=user,
    )
