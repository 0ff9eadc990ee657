"""`chatbot ask [--premium] [QUESTION]`: ask a running bot from the terminal.

It talks to the bot's team API (`CHATBOT_URL`, `CHATBOT_TOKEN`), never to Ollama, so the
answer has the team's knowledge, budgets and premium route. Piped input joins the question
(`git diff | chatbot ask "review this"`: the piped text first). The answer streams as it
comes, Markdown rendered on a terminal, plain text when piped or with NO_COLOR set (not empty).
Exit 0 on an answer, 1 with one line on any failure, 2 on wrong usage, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DESCRIPTION = (
    "Ask the team's assistant from the terminal: a running bot at CHATBOT_URL with a personal "
    "token in CHATBOT_TOKEN (get one with /token in a DM with the bot). Piped input joins the "
    'question: git diff | chatbot ask "review this".'
)
CONNECT_SECONDS = 10.0
ANSWER_SECONDS = 600.0  # a long answer from a busy model server


class AskSettings(BaseSettings):
    """What `chatbot ask` reads (environment or `.env`): none of the server's settings."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    chatbot_url: str = ""
    chatbot_token: SecretStr | None = None


class AskError(Exception):
    """A failure said in one line; ``code`` is the exit code."""

    def __init__(self, line: str, code: int = 1) -> None:
        super().__init__(line)
        self.line = line
        self.code = code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`ask`'s options."""
    parser.add_argument("question", nargs="*", metavar="QUESTION", help="default: stdin only")
    parser.add_argument("--premium", action="store_true", help="answer with the premium model")
    parser.add_argument("--url", default=None, help="the bot's address (default: $CHATBOT_URL)")
    parser.add_argument("--token", default=None, help="a personal token (default: $CHATBOT_TOKEN)")


def main(args: argparse.Namespace, *, stdin: IO[str] | None = None) -> int:
    """Run `chatbot ask`; its exit code."""
    stdin = stdin if stdin is not None else sys.stdin
    try:
        settings = AskSettings()
    except Exception:
        settings = AskSettings(_env_file=None)  # type: ignore[call-arg]
    url = (args.url or settings.chatbot_url).strip().rstrip("/")
    token = args.token or (
        settings.chatbot_token.get_secret_value() if settings.chatbot_token else ""
    )
    try:
        question = _question(args.question, stdin)
        if not url:
            raise AskError("set CHATBOT_URL (or --url) to the bot's address", 2)
        if not url.startswith(("http://", "https://")):
            raise AskError(f"CHATBOT_URL must start with http:// or https://, not {url!r}", 2)
        if not token:
            raise AskError(
                "set CHATBOT_TOKEN (or --token): ask the bot for a token with /token in a DM", 2
            )
        with httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(ANSWER_SECONDS, connect=CONNECT_SECONDS),
        ) as client:
            model = _model(client, url, premium=args.premium)
            _answer(client, url, model, question)
    except AskError as exc:
        print(f"chatbot ask: {exc.line}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:  # the request is closed with the client: the bot stops
        print("\nchatbot ask: stopped", file=sys.stderr)
        return 130
    return 0


def _question(words: list[str], stdin: IO[str]) -> str:
    asked = " ".join(words).strip()
    piped = "" if stdin.isatty() else stdin.read()
    if piped.strip() and asked:
        return f"{piped.rstrip()}\n\n{asked}"
    if piped.strip():
        return piped.strip()
    if asked:
        return asked
    raise AskError('give a question: chatbot ask "how do I ...?" (or pipe text in)', 2)


def _refused(response: httpx.Response, url: str) -> AskError:
    try:
        message = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = response.text.strip()[:200] or response.reason_phrase
    message = " ".join(message.split())  # one line, whatever the bot wrote
    status = response.status_code
    if status == 401:
        return AskError(
            f"the bot at {url} refused the token: ask the bot for a token with /token in a DM"
        )
    if status == 429:
        wait = response.headers.get("Retry-After")
        when = f"try again in {wait} s" if wait and wait.isdigit() else "try again later"
        return AskError(f"rate limited: {when} ({message})")
    if status == 404 and "/v1" not in message and "model" not in message:
        return AskError(f"{url} does not serve the team API (HTTP 404): check CHATBOT_URL")
    return AskError(f"{message} (HTTP {status})")


def _send(client: httpx.Client, url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise AskError(f"cannot reach the bot at {url} ({type(exc).__name__})") from None


def _model(client: httpx.Client, url: str, *, premium: bool) -> str:
    response = _send(client, url, "GET", "/v1/models")
    if response.status_code != 200:
        raise _refused(response, url)
    try:
        ids = [str(m["id"]) for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise AskError(f"{url} did not answer like the bot's API: check CHATBOT_URL") from None
    if not ids:
        raise AskError("the bot offers no model")
    if not premium:
        return ids[0]  # the local model comes first
    if len(ids) < 2:
        raise AskError("premium answers are not available to you on this bot")
    return ids[1]


def _events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def _answer(client: httpx.Client, url: str, model: str, question: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": question}], "stream": True}
    try:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                response.read()
                raise _refused(response, url)
            out = Output.for_stdout()
            with out:
                for event in _events(response):
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if isinstance(text, str) and text:
                            out.add(text)
    except httpx.HTTPError as exc:
        raise AskError(f"the connection to the bot at {url} broke ({type(exc).__name__})") from None


class Output:
    """Where the answer goes: Markdown rendered live on a terminal, else plain text."""

    def __init__(self, *, rich: bool) -> None:
        self._rich = rich
        self._text = ""
        self._live: Any = None

    @classmethod
    def for_stdout(cls) -> Output:
        plain = (
            not sys.stdout.isatty()
            or bool(os.environ.get("NO_COLOR"))
            or os.environ.get("TERM") == "dumb"
        )
        return cls(rich=not plain)

    def __enter__(self) -> Output:
        if self._rich:
            from rich.console import Console
            from rich.live import Live
            from rich.markdown import Markdown

            self._markdown = Markdown
            self._live = Live(Markdown(""), console=Console(), refresh_per_second=10)
            self._live.__enter__()
        return self

    def add(self, text: str) -> None:
        self._text += text
        if self._live is not None:
            self._live.update(self._markdown(self._text))
        else:
            sys.stdout.write(text)
            sys.stdout.flush()

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
        elif self._text and not self._text.endswith("\n"):
            sys.stdout.write("\n")
            sys.stdout.flush()
