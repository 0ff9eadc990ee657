"""Every Redis key the bot uses is built here."""

from __future__ import annotations

from bot.conversation import ConversationKey

PREFIX = "chatbot"


def history(key: ConversationKey) -> str:
    """The list holding a conversation's turns."""
    return f"{PREFIX}:mem:{key.as_id()}"


def lock(key: ConversationKey) -> str:
    """The lock serialising answers within one conversation."""
    return f"{PREFIX}:lock:{key.as_id()}"


def engaged(key: ConversationKey) -> str:
    """Marks a thread the bot owns (its first message mentioned the bot)."""
    return f"{PREFIX}:engaged:{key.as_id()}"


def seen(platform: str, message_id: str) -> str:
    """Dedupe marker for one inbound message or event."""
    return f"{PREFIX}:seen:{platform}:{message_id}"


def rate_minute(user: str, minute: int) -> str:
    """A user's question count in one clock minute (epoch minutes)."""
    return f"{PREFIX}:rl:m:{user}:{minute}"


def rate_day(user: str, day: int) -> str:
    """A user's question count in one UTC day (epoch days)."""
    return f"{PREFIX}:rl:d:{user}:{day}"


def work_stream() -> str:
    """The Redis Stream of accepted work, shared by every replica."""
    return f"{PREFIX}:work"


def job_posted(job_id: str) -> str:
    """Platform message ids a job has shown so far."""
    return f"{PREFIX}:job:{job_id}:posted"


def job_failure(job_id: str) -> str:
    """Why a job's last try failed (set by the first failure: its traceback is logged once)."""
    return f"{PREFIX}:job:{job_id}:failure"


def set_aside() -> str:
    """The dead-letter stream: jobs tried too often, or unreadable, with the reason."""
    return f"{PREFIX}:work:set-aside"


def model_line(server: str) -> tuple[str, str, str, str]:
    """A model server's line for the whole fleet: slot holders, the line, the waiters'
    leases, the arrival counter."""
    base = f"{PREFIX}:line:{server}"
    return f"{base}:holders", f"{base}:waiting", f"{base}:leases", f"{base}:arrivals"


def call_pace(scope: str) -> str:
    """The pace (theoretical arrival time) of calls to an outside API in one scope, e.g. a
    Slack method in one workspace."""
    return f"{PREFIX}:pace:{scope}"


def admin_code(digest: str) -> str:
    """A one-time analytics sign-in code, by its SHA-256 digest (the code is never stored)."""
    return f"{PREFIX}:admin:code:{digest}"


def admin_session_key() -> str:
    """The key that signs analytics session cookies, shared by every process."""
    return f"{PREFIX}:admin:session-key"
