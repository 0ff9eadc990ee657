"""Our turns as LangChain messages, for every LangChain-backed provider."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from inference.base import Turn


def to_langchain(turns: Sequence[Turn]) -> list[BaseMessage]:
    """The LangChain message for each turn, in order."""
    return [_to_message(turn) for turn in turns]


def _to_message(turn: Turn) -> BaseMessage:
    if turn.role == "system":
        return SystemMessage(content=turn.content)
    if turn.role == "assistant":
        return AIMessage(content=turn.content)
    return HumanMessage(content=turn.content)
