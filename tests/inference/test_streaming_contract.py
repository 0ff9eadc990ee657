"""`inference.streaming` calls LangChain's private `_astream` (for speed, see its comment): the
pinned range of langchain-core (pyproject.toml) still has it, with the signature the call
uses, and the chat models the bot uses implement it themselves (the base class's fallback
would generate the whole answer before the first token)."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI


def test_the_installed_langchain_core_is_in_the_pinned_range() -> None:
    major = int(version("langchain-core").split(".")[0])
    assert major < 2, "inference/streaming.py's `_astream` call was checked up to 1.x"


@pytest.mark.parametrize("chat", [ChatOllama, ChatOpenAI])
def test_the_chat_models_stream_with_their_own_astream(chat: type[BaseChatModel]) -> None:
    assert chat._astream is not BaseChatModel._astream
    # Called with the messages as its one positional argument.
    first = list(inspect.signature(chat._astream).parameters.values())[1]
    assert first.name == "messages" or first.kind is inspect.Parameter.VAR_POSITIONAL
    assert inspect.isasyncgenfunction(chat._astream)
