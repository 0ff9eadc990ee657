"""A newcomer's first hour: a copied .env.example works on a laptop, example values count as
unset, the ledger has one home, and every command words a mistake as doctor does."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

from adapters.app.settings import Settings, is_placeholder
from adapters.cli import main
from adapters.doctor import check_slack, load_settings
from tests.support import REPO
from tests.support.processes import CHATBOT

ROOT = REPO


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh folder with no setting in the environment, as on a new laptop."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_a_copied_env_example_is_the_laptop_default(clean_env: Path) -> None:
    shutil.copy(ROOT / ".env.example", clean_env / ".env")
    settings = Settings()
    assert settings.slack_bot_token is None and settings.slack_signing_secret is None
    assert settings.slack_app_token is None and settings.openai_api_key is None
    assert settings.microsoft_app_id == ""
    # Only a set REDIS_URL makes Redis required.
    assert settings.redis_url is None
    assert settings.database_is_default
    assert settings.ollama_urls == ["http://localhost:11434"]
    assert settings.placeholders == ()


OLD_EXAMPLE = (
    "SLACK_BOT_TOKEN=xoxb-0000000000-0000000000000-xxxxxxxxxxxxxxxxxxxxxxxx\n"
    "SLACK_SIGNING_SECRET=00000000000000000000000000000000\n"
    "MICROSOFT_APP_ID=00000000-0000-0000-0000-000000000000\n"
    "OPENAI_API_KEY=sk-...\n"
)


async def test_example_values_are_unset_and_doctor_says_so(clean_env: Path) -> None:
    (clean_env / ".env").write_text(OLD_EXAMPLE)
    settings, checks = load_settings(Settings)
    assert settings is not None
    assert settings.slack_bot_token is None and settings.slack_signing_secret is None
    assert settings.microsoft_app_id == "" and settings.openai_api_key is None
    warning = next(c for c in checks if c.status == "WARN")
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "MICROSOFT_APP_ID"):
        assert name in warning.what
    assert "example value" in warning.what
    (slack,) = await check_slack(settings)
    assert slack.status == "OK" and "Slack is off" in slack.what


def test_real_looking_values_are_not_placeholders() -> None:
    for value in ("xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy", "sk-x", "8f74223"):
        assert not is_placeholder(value), value
    for value in ("xoxb-0000-xxxx-XXXXXXXX", "0" * 32, "<your token>", "changeme", "xapp-"):
        assert is_placeholder(value), value


def test_the_default_ledger_is_one_file_whatever_the_folder(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Settings(_env_file=None).effective_database_url  # type: ignore[call-arg]
    elsewhere = clean_env / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    second = Settings(_env_file=None).effective_database_url  # type: ignore[call-arg]
    assert first == second == f"sqlite:///{clean_env.parent / 'data' / 'chatbot' / 'chatbot.db'}"
    # A DATABASE_URL that is set is used as written.
    monkeypatch.setenv("DATABASE_URL", "sqlite:///here.db")
    assert Settings(_env_file=None).effective_database_url == "sqlite:///here.db"  # type: ignore[call-arg]


async def test_doctor_says_where_the_default_ledger_is(clean_env: Path) -> None:
    from adapters.doctor import check_database

    (check,) = await check_database(Settings(_env_file=None))  # type: ignore[call-arg]
    assert str(clean_env.parent / "data" / "chatbot" / "chatbot.db") in check.what
    assert "DATABASE_URL not set" in check.what


@pytest.mark.parametrize("command", [["serve"], ["chat"], ["usage"]])
def test_an_invalid_setting_is_worded_as_doctor_words_it(
    command: list[str],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MICROSOFT_APP_TYPE", "multitenant")
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "MICROSOFT_APP_TYPE: Input should be 'MultiTenant'" in err
    assert "pydantic" not in err and "input_value" not in err and "chatbot doctor" in err


def _run(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHATBOT, *args],
        env=env,
        cwd=cwd,
        input="",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_bad_database_url_is_one_line_without_a_traceback(clean_env: Path) -> None:
    env = {**os.environ, "DATABASE_URL": "nosuchdb://host/db", "REDIS_URL": "redis://127.0.0.1:1/0"}
    for args in (("serve", "--port", "0"), ("chat",), ("usage",), ("db", "upgrade")):
        result = _run(*args, env=env, cwd=clean_env)
        assert result.returncode == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr and "DATABASE_URL" in result.stderr, args
        assert len(result.stderr.strip().splitlines()) <= 3, result.stderr


def test_cli_help_version_and_db_without_a_task(clean_env: Path) -> None:
    env = dict(os.environ)
    version = _run("--version", env=env, cwd=clean_env)
    assert version.returncode == 0 and version.stdout.startswith("chatbot ")
    for command in ("serve", "chat", "doctor", "usage", "teams-package"):
        page = _run(command, "--help", env=env, cwd=clean_env).stdout
        description = page.split("\n\n")[1]
        assert not description.lstrip().startswith(("options", "positional")), command
    db = _run("db", env=env, cwd=clean_env)
    assert db.returncode == 2 and "db_command" not in db.stderr and "upgrade" in db.stderr


def test_chatbot_alone_prints_its_help_and_every_option_has_help_text(clean_env: Path) -> None:
    alone = _run(env=dict(os.environ), cwd=clean_env)
    assert alone.returncode == 0 and alone.stderr == ""
    assert "COMMAND" in alone.stdout and "chatbot doctor" in alone.stdout

    from adapters.cli import _parser

    missing = []
    parsers = [("chatbot", _parser())]
    while parsers:
        name, parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += [(f"{name} {n}", p) for n, p in action.choices.items()]
                missing += [f"{name} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
        if name != "chatbot" and not parser.description:
            missing.append(f"{name} (description)")
    assert missing == []


async def test_serve_port_0_listens_on_a_free_port_even_when_port_is_taken(
    clean_env: Path, redis_url: str
) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    taken = held.getsockname()[1]
    env = {**os.environ, "PORT": str(taken), "REDIS_URL": redis_url}  # Redis: --workers
    try:
        for workers in ("1", "2"):
            proc = await asyncio.create_subprocess_exec(
                *(CHATBOT, "serve", "--port", "0", "--host", "127.0.0.1", "--workers", workers),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=clean_env,
            )
            assert proc.stdout is not None
            try:
                async with asyncio.timeout(30):
                    line = b""
                    while b"listening on" not in line:
                        line = await proc.stdout.readline()
                        assert line, "serve ended before listening"
                match = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
                assert match is not None, line
                port = int(match.group(1))
                assert port not in (0, taken)
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/healthz") as resp,
                ):
                    assert resp.status == 200
            finally:
                proc.terminate()
                await asyncio.wait_for(proc.communicate(), 30)
    finally:
        held.close()


async def test_serve_with_nothing_configured_says_what_is_missing_and_what_next(
    clean_env: Path,
) -> None:
    from tests.support.processes import free_port

    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k.upper() not in {n.upper() for n in Settings.model_fields}
        },
        "XDG_DATA_HOME": str(clean_env.parent / "data"),
        "OLLAMA_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    proc = await asyncio.create_subprocess_exec(
        CHATBOT,
        "serve",
        "--port",
        "0",  # any free port: no test depends on a fixed one being free
        "--host",
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=clean_env,
    )
    assert proc.stdout is not None
    seen = b""
    try:
        async with asyncio.timeout(30):
            while b"chatbot chat" not in seen:
                seen += await proc.stdout.readline()
    finally:
        proc.terminate()
        rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = (seen + rest).decode()
    assert "ollama serve" in text  # doctor's sentence for a model server that is down
    assert "Slack and Teams are both off" in text and "chatbot doctor" in text
    assert "Traceback" not in text
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("OLLAMA_BASE_URL", "htp://gpu-host:11434", "the scheme 'htp' is not http:// or https://"),
        ("OLLAMA_BASE_URL", "http://gpu:11434,ftp://cpu", "the scheme 'ftp'"),
        ("SLACK_API_URL", "slack.com/api/", "a URL without a scheme"),
        ("OPENAI_BASE_URL", "file:///etc/passwd", "the scheme 'file'"),
    ],
)
def test_a_url_setting_whose_scheme_is_not_http_is_refused_naming_it(
    name: str,
    value: str,
    said: str,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert f"{name}: Value error, {said}" in err
    assert value not in err  # a URL may hold a password
