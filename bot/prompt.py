"""Builds the model prompt within the context window: the system prompt, the newest
question, the indexed passages (numbered, each with its title), then as much recent
history as fits, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inference.base import Turn
from inference.knowledge import Passage
from inference.tokens import estimate_message_tokens

# Passages may take at most this share of the prompt budget, so history keeps some room.
PASSAGE_SHARE = 0.6

GROUNDING = (
    "Sources from the team's own documentation and code are given below, numbered. "
    "When they help, answer from them and cite each fact with its source number in "
    "brackets, like [1] or [2]. Cite only the numbers given. If the sources do not answer "
    "the question, say so in one sentence and answer from general knowledge."
)


def prompt_budget(context_tokens: int) -> int:
    """Tokens available to the prompt, leaving a quarter of the window for the answer."""
    return context_tokens - max(256, context_tokens // 4)


@dataclass(frozen=True, slots=True)
class Prompt:
    """The turns to send, and the passages among them (``passages[n-1]`` is source [n])."""

    turns: list[Turn]
    passages: list[Passage]


def format_passage(number: int, passage: Passage) -> str:
    """One numbered source as the model sees it."""
    heading = f" › {passage.heading}" if passage.heading else ""
    return f"[{number}] {passage.title}{heading}\n{passage.text.strip()}"


def build_prompt(
    *,
    system_prompt: str,
    history: Sequence[Turn],
    question: str,
    budget_tokens: int,
    passages: Sequence[Passage] = (),
) -> Prompt:
    """The prompt within ``budget_tokens``: the system prompt and the newest question always
    stay; then passages, best first, while they fit their share; then history, oldest
    dropped first."""
    system = f"{system_prompt}\n\n{GROUNDING}" if passages else system_prompt
    used = estimate_message_tokens(system) + estimate_message_tokens(question)
    sources: list[str] = []
    kept_passages: list[Passage] = []
    passage_room = int(budget_tokens * PASSAGE_SHARE)
    for passage in passages:
        block = format_passage(len(kept_passages) + 1, passage)
        cost = estimate_message_tokens(block)
        if used + cost > passage_room and kept_passages:
            break
        if used + cost > budget_tokens:
            break
        sources.append(block)
        kept_passages.append(passage)
        used += cost
    kept: list[Turn] = []
    for turn in reversed(history):
        cost = estimate_message_tokens(turn.content)
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    # A conversation should not open with an orphaned answer whose question was dropped.
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    if sources:
        # The sources travel with the question (not the system prompt), so the premium
        # route redacts them with the rest of the conversation.
        asked = "Sources:\n\n" + "\n\n".join(sources) + f"\n\nQuestion: {question}"
    else:
        asked = question
    turns = [Turn("system", system), *kept, Turn("user", asked)]
    return Prompt(turns=turns, passages=kept_passages)
