"""Every text the bot writes into a conversation on its own behalf (not model output).

The core names no provider: texts that mention one, or a setting an admin changes, have
placeholders that ``ProviderNames.fill`` fills with what the composition root gives."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProviderNames:
    """How replies name the model providers and the settings an admin would change."""

    local: str = "the self-hosted model server"
    premium: str = "the premium provider"
    premium_key: str = "the premium API key"
    premium_users: str = "the premium allowlist"
    premium_model: str = "the premium model setting"
    install: str = "install `{model}` on the model server"  # may use {model}

    def fill(self, template: str, **values: object) -> str:
        """``template`` with these names and ``values`` filled in."""
        return template.format(
            local_provider=self.local,
            provider=self.premium,
            key_setting=self.premium_key,
            users_setting=self.premium_users,
            model_setting=self.premium_model,
            install=self.install.format(model=values.get("model", "")),
            **values,
        )


GENERIC_NAMES = ProviderNames()


EMPTY_QUESTION = (
    "I didn't get a question. Write it after the mention, e.g. "
    "`@bot how do I reverse a list in Python?` — or `/help` for the commands."
)
TOO_LONG = (
    "Your message is {length:,} characters; the limit here is {limit:,}. "
    "Please shorten it (paste only the relevant part of the code or log) and ask again."
)
EMPTY_ANSWER = "The model returned an empty answer. Try rephrasing the question."
MODEL_UNAVAILABLE = (
    "The model server is not reachable right now, so I can't answer. "
    "Please try again in a few minutes; if it persists, tell the bot's admin "
    "(`chatbot doctor` shows what is wrong)."
)
MODEL_NOT_FOUND = (
    "The model `{model}` is not installed on the model server. An admin can {install}."
)
INCOMPLETE = (
    "_The model server failed in the middle of this answer, so it is incomplete. "
    "Ask again to get a full answer._"
)
INTERNAL_ERROR = (
    "Something went wrong on my side while answering. Please try again; "
    "if it keeps happening, tell the bot's admin."
)
JOB_SET_ASIDE = (
    "Sorry, I could not answer your question: something went wrong each time I tried, so "
    "I have stopped trying. Please ask again (rephrasing may help); if it keeps happening, "
    "tell the bot's admin."
)
JOB_UNREADABLE = (
    "Sorry, I could not answer your question: the bot was updated while it waited and "
    "cannot read it any more. Please ask again."
)
STORE_UNAVAILABLE = (
    "My conversation memory (Redis) is not reachable right now, so I can't answer in context. "
    "Please try again in a minute."
)
BUSY = "I'm still answering an earlier message in this thread. Please ask again in a minute."
RESET_DONE = "Done — I forgot this conversation. The next message starts fresh."
UNKNOWN_COMMAND = (
    "I don't know the command `/{word}`. Commands: {commands}. (To ask about something that "
    "starts with a slash, put a word before it.)"
)
PREMIUM_OFF = (
    "Premium answers are not configured on this bot (no {provider} API key), "
    "so nothing was sent anywhere. Ask without `/premium` to use the local model "
    "({local_model}), or ask the bot's admin to set {key_setting}."
)
PREMIUM_NOT_ALLOWED = (
    "You are not on the list of people allowed to use `/premium` here, so nothing was sent. "
    "Ask without `/premium` to use the local model ({local_model}), or ask the bot's admin "
    "to add you to {users_setting}."
)
PREMIUM_SIGNATURE = "\n\n_Answered by {model} (premium)._"
MODEL_INFO = (
    "**Local model:** `{local_model}` ({local_provider}; your text stays on company servers)\n"
    "**Premium model:** {premium}"
)
RATE_LIMITED = (
    "You've reached the limit of {limit} questions per {window}. "
    "You can ask again at {at} (in {wait})."
)
QUEUED = "Queued — #{position} in line. I'll start answering as soon as the model is free."
OVERLOADED = "Too many questions are waiting for the model right now. Please try again in a minute."
PREMIUM_REDACTED = (
    "_Before sending this to {provider} I replaced {kinds} with placeholders; "
    "the values were not sent._\n\n"
)
PREMIUM_OVER_USER_BUDGET = (
    "You've used {spent} of your {budget} monthly premium budget, so nothing was sent to "
    "{provider}. It resets on {reset} (UTC). Ask without `/premium` to use the local model "
    "({local_model}), or ask the bot's admin about `PREMIUM_MONTHLY_BUDGET_USD`."
)
PREMIUM_OVER_WORKSPACE_BUDGET = (
    "This workspace has used {spent} of its {budget} monthly premium budget, so nothing was "
    "sent to {provider}. It resets on {reset} (UTC). Ask without `/premium` to use the local "
    "model "
    "({local_model}), or ask the bot's admin about `PREMIUM_WORKSPACE_MONTHLY_BUDGET_USD`."
)
PREMIUM_BUDGET_UNKNOWN = (
    "I can't check the premium budget right now (the usage database is not reachable), "
    "so nothing was sent to {provider}. Please try again in a few minutes, or ask without "
    "`/premium` to use the local model ({local_model})."
)
PREMIUM_AUTH_FAILED = (
    "{provider} refused this bot's API key, so the premium model can't answer. Please tell the "
    "bot's admin ({key_setting} needs fixing). Meanwhile, ask without `/premium` to use "
    "the local model ({local_model})."
)
PREMIUM_UNAVAILABLE = (
    "The premium model ({provider}) is not answering right now (unreachable, overloaded or "
    "rate-limited). Please try again in a few minutes, or ask without `/premium` to use the "
    "local model ({local_model})."
)
PREMIUM_MODEL_NOT_FOUND = (
    "The premium model `{model}` is not available to this bot's {provider} account. "
    "An admin can check {model_setting}."
)
PREMIUM_SPEND = "*Your premium spend this month:* {spent} of your {budget} budget"
PREMIUM_SPEND_NO_LIMIT = "*Your premium spend this month:* {spent} (no monthly limit)"
PREMIUM_WORKSPACE_SPEND = "*This workspace's premium spend this month:* {spent} of {budget}"
PREMIUM_SPEND_UNKNOWN = (
    "*Your premium spend this month:* unknown right now (the usage database is not reachable)"
)
PREMIUM_SPEND_NOT_ALLOWED = "_You are not on the list of people allowed to use `/premium` here._"
# Appended (once per conversation) to an answer given while memory is down.
MEMORY_DOWN = (
    "_My conversation memory is unavailable right now: the earlier messages of this "
    "conversation were not used, and this one won't be remembered. It recovers by itself._"
)
# Team knowledge (indexed sources).
NO_SOURCE_MATCHED = (
    "_No indexed source matched this question; this answer is from the model alone._"
)
KNOWLEDGE_UNAVAILABLE = (
    "_The team knowledge index is not reachable right now, so this answer does not draw on it._"
)
SEARCH_HEADER = "**Best matches in the indexed sources for “{words}”:**"
SEARCH_NOTHING = "No indexed document matches “{words}”. Try other words, or ask me directly."
SEARCH_NOT_CONFIGURED = (
    "Team knowledge is not set up on this bot, so there is nothing to search. "
    "An admin can add sources with `KNOWLEDGE_SOURCES` and run `chatbot index`."
)
SEARCH_UNAVAILABLE = (
    "The team knowledge index is not reachable right now. Please try again in a few minutes."
)
# The analytics page (`/admin`).
ADMIN_NOT_SET_UP = (
    "The analytics page is not set up on this bot: an operator lists its admins in "
    "`ADMIN_USERS` (and sets `PUBLIC_URL`)."
)
ADMIN_ONLY = "`/admin` is for the admins of this bot (`ADMIN_USERS`); you are not one of them."
ADMIN_DIRECT_ONLY = (
    "The sign-in link is personal: send `/admin` in a direct message with me, not here."
)
ADMIN_LINK = (
    "Your sign-in link to the analytics page (valid {minutes} minutes, once; don't share it):\n"
    "{url}"
)
ADMIN_UNAVAILABLE = (
    "I can't make a sign-in link right now (the bot's storage is not reachable). "
    "Please try again in a few minutes."
)
