"""How the handling of one message ended, and what else is counted on the way: one
vocabulary for the usage ledger, the metrics and the logs."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """How one message ended. The first group asked a model (a usage record is written);
    the second did not."""

    OK = "ok"
    CANCELLED = "cancelled"  # the person stopped the answer (Teams' Stop)
    EMPTY_ANSWER = "empty_answer"
    AUTH_FAILED = "auth_failed"  # the provider refused the API key
    MODEL_NOT_FOUND = "model_not_found"
    OVERLOADED = "overloaded"  # every slot busy and the waiting line full
    MODEL_UNAVAILABLE = "model_unavailable"  # no server answered (after failover)
    GENERATION_FAILED = "generation_failed"  # the server failed mid-answer

    COMMAND = "command"  # /help, /reset, /model, /search answered
    REFUSED = "refused"  # empty, too long, not allowed, over budget, rate limited
    STORE_UNAVAILABLE = "store_unavailable"  # Redis down where it is needed
    ERROR = "error"  # a bug: the person got an apology


class Event(StrEnum):
    """Something countable noticed while handling messages, besides their outcome."""

    DEDUPE_HIT = "dedupe_hit"  # a redelivered or doubled event, not answered again
    RATE_LIMITED = "rate_limited"  # a question refused by the rate limit (also REFUSED)
    RECLAIMED = "reclaimed"  # work another replica accepted and did not finish, taken over
    SET_ASIDE = "set_aside"  # work tried too often or unreadable: not tried again, asker told
    VOTE_UP = "vote_up"  # a person rated an answer helpful (feedback buttons)
    VOTE_DOWN = "vote_down"  # ... or not helpful
