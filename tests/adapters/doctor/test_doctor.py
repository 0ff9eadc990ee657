"""`chatbot doctor`: one line per dependency, the fix for each problem, exit 0 only when
everything required works. Real Redis and databases; fake Slack, Ollama and OpenAI servers
on localhost driven through the real clients."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from adapters.app.settings import Settings
from adapters.doctor import run
from bot import database
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai import API_KEY as OPENAI_KEY
from tests.fakes.openai import FakeOpenAI
from tests.fakes.slack import FakeSlack
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET, bot_settings
from tests.support.processes import CHATBOT, closed_port

SECRETS = (BOT_TOKEN, SIGNING_SECRET, OPENAI_KEY)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own settings (e.g. an OPENAI_API_KEY) must not change the report."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    await asyncio.to_thread(database.upgrade, database_url)
    return database_url


@pytest.fixture
def healthy(
    migrated_url: str, redis_url: str, fake_ollama: FakeOllama, fake_slack: FakeSlack
) -> dict[str, Any]:
    """Settings under which every dependency works (Slack in HTTP mode)."""
    return {
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": fake_slack.api_url,
        "ollama_base_url": fake_ollama.url,
        "ollama_model": "codellama:7b",
        "redis_url": redis_url,
        "database_url": migrated_url,
    }


async def doctor(**settings: Any) -> tuple[int, str]:
    out = io.StringIO()
    code = await run(lambda: bot_settings(**settings), out=out)
    report = out.getvalue()
    for secret in SECRETS:
        assert secret not in report
    return code, report


def lines_of(report: str, component: str) -> list[str]:
    """The report's lines about one component, each with its fix line appended."""
    blocks: list[str] = []
    for line in report.splitlines():
        if line.startswith(("OK", "WARN", "FAIL")):
            blocks.append(line)
        elif line.strip().startswith("fix:") and blocks:
            blocks[-1] += "\n" + line
    return [block for block in blocks if block.split()[1] == component]


def only(report: str, component: str, status: str) -> str:
    matching = [line for line in lines_of(report, component) if line.startswith(status)]
    assert len(matching) == 1, report
    return matching[0]


async def test_everything_working_is_all_ok_and_exits_0(healthy: dict[str, Any]) -> None:
    code, report = await doctor(**healthy)
    assert code == 0, report
    checks = [line for line in report.splitlines() if line and not line.startswith(" ")][:-1]
    assert all(line.startswith("OK") for line in checks), report
    assert "auth.test ok: @assistant" in lines_of(report, "slack")[0]
    assert "migrations at head" in only(report, "database", "OK")
    assert "has codellama:7b" in only(report, "ollama", "OK")
    assert report.rstrip().endswith("everything works")


async def test_redis_down_fails_with_the_fix(healthy: dict[str, Any]) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    code, report = await doctor(**{**healthy, "redis_url": url})
    assert code == 1
    line = only(report, "redis", "FAIL")
    assert url in line and "does not answer" in line
    assert "start Redis" in line and "unset REDIS_URL" in line


async def test_no_redis_url_and_no_local_redis_is_a_warning(
    healthy: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "adapters.app.settings.DEFAULT_REDIS_URL", f"redis://127.0.0.1:{closed_port()}"
    )
    code, report = await doctor(**{**healthy, "redis_url": None})
    assert code == 0, report
    assert "memory would be kept in-process" in only(report, "redis", "WARN")


async def test_redis_password_is_not_shown(healthy: dict[str, Any]) -> None:
    code, report = await doctor(
        **{**healthy, "redis_url": f"redis://:hunter2-pw@127.0.0.1:{closed_port()}/0"}
    )
    assert code == 1
    assert "hunter2-pw" not in report


async def test_missing_sqlite_database_says_run_db_upgrade(
    healthy: dict[str, Any], tmp_path: Path
) -> None:
    code, report = await doctor(**{**healthy, "database_url": f"sqlite:///{tmp_path}/none.db"})
    assert code == 1
    line = only(report, "database", "FAIL")
    assert "does not exist yet" in line and "run `chatbot db upgrade`" in line
    assert not (tmp_path / "none.db").exists()  # doctor creates nothing


async def test_unmigrated_database_says_run_db_upgrade(
    database_url: str, redis_url: str, fake_ollama: FakeOllama
) -> None:
    if database_url.startswith("sqlite"):
        # An existing but empty file.
        await asyncio.to_thread(database.current_revision, database_url)
    code, report = await doctor(
        database_url=database_url, redis_url=redis_url, ollama_base_url=fake_ollama.url
    )
    assert code == 1
    line = only(report, "database", "FAIL")
    assert "no tables yet" in line and "run `chatbot db upgrade`" in line


async def test_database_behind_the_code_says_run_db_upgrade(
    database_url: str, redis_url: str, fake_ollama: FakeOllama
) -> None:
    await asyncio.to_thread(database.upgrade, database_url, "0001")
    code, report = await doctor(
        database_url=database_url, redis_url=redis_url, ollama_base_url=fake_ollama.url
    )
    assert code == 1
    line = only(report, "database", "FAIL")
    assert f"at 0001, this version needs {database.head_revision()}" in line
    assert "run `chatbot db upgrade`" in line


async def test_unreachable_database_fails_without_showing_its_password(
    healthy: dict[str, Any],
) -> None:
    url = f"postgresql://chatbot:pw-s3cret@127.0.0.1:{closed_port()}/chatbot"
    code, report = await doctor(**{**healthy, "database_url": url})
    assert code == 1
    line = only(report, "database", "FAIL")
    assert "cannot connect" in line and "start the database" in line
    assert "pw-s3cret" not in report and "chatbot:***@" in line


async def test_ollama_down_fails_with_the_fix(
    healthy: dict[str, Any], fake_ollama: FakeOllama
) -> None:
    await fake_ollama.stop()
    code, report = await doctor(**healthy)
    assert code == 1
    line = only(report, "ollama", "FAIL")
    assert fake_ollama.url in line and "does not answer" in line and "`ollama serve`" in line


async def test_model_not_pulled_says_which_pull_to_run_where(healthy: dict[str, Any]) -> None:
    async with FakeOllama(models=["llama3.1:8b"]) as other:
        code, report = await doctor(**{**healthy, "ollama_base_url": other.url})
    assert code == 1
    line = only(report, "ollama", "FAIL")
    assert "does not have the model codellama:7b" in line
    assert f"run `ollama pull codellama:7b` on {other.url}" in line


async def test_a_failover_server_down_is_a_warning_while_another_answers(
    healthy: dict[str, Any], fake_ollama: FakeOllama
) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    code, report = await doctor(**{**healthy, "ollama_base_url": f"{down},{fake_ollama.url}"})
    assert code == 0, report
    assert down in only(report, "ollama", "WARN")
    assert fake_ollama.url in only(report, "ollama", "OK")


async def test_ollama_url_credentials_are_not_shown(healthy: dict[str, Any]) -> None:
    url = f"http://admin:ollama-pw@127.0.0.1:{closed_port()}"
    code, report = await doctor(**{**healthy, "ollama_base_url": url})
    assert code == 1
    assert "ollama-pw" not in report and "admin" not in report


async def test_slack_wrong_token_fails_auth_test(healthy: dict[str, Any]) -> None:
    wrong = "xoxb-17653672481-19874698323-wrongwrongwrong"
    code, report = await doctor(**{**healthy, "slack_bot_token": wrong})
    assert code == 1
    line = only(report, "slack", "FAIL")
    assert "auth.test" in line and "invalid_auth" in line
    assert "Bot User OAuth Token" in line and "SLACK_BOT_TOKEN" in line
    assert wrong not in report


async def test_a_missing_postgresql_database_says_create_it_not_start_the_server(
    healthy: dict[str, Any], postgres_server: str
) -> None:
    url = make_url(postgres_server).set(database="chatbot_no_such_db").render_as_string(False)
    code, report = await doctor(**{**healthy, "database_url": url})
    assert code == 1
    line = only(report, "database", "FAIL")
    assert "create it" in line and "chatbot db upgrade" in line, line
    assert "start the database server" not in line


async def test_a_signing_secret_shorter_than_slacks_is_a_warning(
    healthy: dict[str, Any],
) -> None:
    code, report = await doctor(**{**healthy, "slack_signing_secret": "tooshort"})
    assert code == 0  # a warning, not a failure
    line = only(report, "slack", "WARN")
    assert "SLACK_SIGNING_SECRET is 8 characters; Slack's are 32" in line and "401" in line
    assert "tooshort" not in report


async def test_slack_http_mode_needs_the_signing_secret(healthy: dict[str, Any]) -> None:
    code, report = await doctor(**{**healthy, "slack_signing_secret": None})
    assert code == 1
    line = only(report, "slack", "FAIL")
    assert "SLACK_SIGNING_SECRET" in line and "401" in line


async def test_socket_mode_checks_the_app_token(
    healthy: dict[str, Any], fake_slack: FakeSlack
) -> None:
    socket_mode = {**healthy, "slack_signing_secret": None}
    code, report = await doctor(**socket_mode, slack_app_token=fake_slack.app_token)
    assert code == 0, report
    assert "Socket Mode: SLACK_APP_TOKEN accepted" in report
    assert fake_slack.app_token not in report

    code, report = await doctor(**socket_mode, slack_app_token="xapp-1-AFAKEAPP-1-wrong")
    assert code == 1
    assert "invalid_auth" in only(report, "slack", "FAIL")

    code, report = await doctor(**socket_mode, slack_app_token="xoxb-not-an-app-token")
    assert code == 1
    line = only(report, "slack", "FAIL")
    assert "does not start with xapp-" in line and "connections:write" in line


async def test_openai_problems_are_warnings_and_a_good_key_is_ok(
    healthy: dict[str, Any],
) -> None:
    async with FakeOpenAI(models=["gpt-4.1"]) as openai:
        premium = {**healthy, "openai_base_url": openai.url, "premium_model": "gpt-4.1"}
        code, report = await doctor(**premium, openai_api_key=OPENAI_KEY)
        assert code == 0, report
        assert "key accepted" in only(report, "openai", "OK")

        code, report = await doctor(**premium, openai_api_key="sk-wrong0123456789abcdefghijkl")
        assert code == 0, report
        line = only(report, "openai", "WARN")
        assert "refused OPENAI_API_KEY (HTTP 401)" in line and "unset it" in line

        code, report = await doctor(
            **{**premium, "premium_model": "gpt-9"}, openai_api_key=OPENAI_KEY
        )
        assert code == 0, report
        assert "PREMIUM_MODEL=gpt-9 is not offered" in only(report, "openai", "WARN")

    unreachable = f"http://127.0.0.1:{closed_port()}/v1"
    code, report = await doctor(**healthy, openai_api_key=OPENAI_KEY, openai_base_url=unreachable)
    assert code == 0, report
    assert "cannot reach" in only(report, "openai", "WARN")


async def test_teams_credentials_are_checked_but_not_verified(healthy: dict[str, Any]) -> None:
    app_id = "2f1d4a47-5f8a-4c8b-9d59-0a4c1c2b3d4e"
    code, report = await doctor(
        **healthy, microsoft_app_id=app_id, microsoft_app_type="SingleTenant"
    )
    assert code == 1
    teams = "\n".join(lines_of(report, "teams"))
    assert "needs MICROSOFT_APP_PASSWORD" in teams and "needs MICROSOFT_APP_TENANT_ID" in teams

    code, report = await doctor(
        **healthy, microsoft_app_id=app_id, microsoft_app_password="teams-s3cret-value"
    )
    assert code == 0, report
    line = only(report, "teams", "OK")
    assert "MultiTenant" in line and "not verified" in line
    assert "teams-s3cret-value" not in report


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeOllama, FakeSlack]]:
    slack = FakeSlack(bot_token=BOT_TOKEN)
    async with FakeOllama() as ollama, slack:
        yield ollama, slack


async def test_chatbot_doctor_command(
    tmp_path: Path, redis_url: str, fakes: tuple[FakeOllama, FakeSlack]
) -> None:
    ollama, slack = fakes
    db = f"sqlite:///{tmp_path}/doctor.db"
    await asyncio.to_thread(database.upgrade, db)
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "OLLAMA_BASE_URL": ollama.url,
        "REDIS_URL": redis_url,
        "DATABASE_URL": db,
    }

    async def chatbot_doctor(env: dict[str, str]) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            CHATBOT,
            "doctor",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    code, report = await chatbot_doctor(env)
    assert code == 0, report
    assert "everything works" in report and "Traceback" not in report
    assert BOT_TOKEN not in report and SIGNING_SECRET not in report

    await ollama.stop()
    code, report = await chatbot_doctor(env)
    assert code == 1, report
    assert f"start Ollama on {ollama.url}" in report

    code, report = await chatbot_doctor({**env, "PORT": "not-a-port"})
    assert code == 1, report
    assert "FAIL" in report and "PORT" in report
    assert BOT_TOKEN not in report and "Traceback" not in report


def test_doctor_is_in_the_help() -> None:
    result = subprocess.run([CHATBOT, "--help"], capture_output=True, text=True, timeout=60)
    assert "doctor" in result.stdout


async def test_questions_set_aside_by_the_work_queue_are_listed(
    healthy: dict[str, Any], redis_client: Any
) -> None:
    import asyncio
    import json

    from bot import keys
    from bot.tasks import TaskTracker
    from bot.workqueue import WorkQueue

    job = {"kind": "slack.event", "version": 7, "reply_to": {"platform": "slack"}}
    await redis_client.xadd(keys.work_stream(), {"job": json.dumps(job)})
    tracker = TaskTracker()
    queue = WorkQueue(redis=redis_client, tracker=tracker, block_seconds=0.05)
    run = asyncio.create_task(queue.run())
    deadline = asyncio.get_running_loop().time() + 10
    while await redis_client.xlen(keys.work_stream()):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    queue.stop()
    await run
    code, report = await doctor(**healthy)
    line = only(report, "queue", "WARN")
    assert "slack job" in line and "slack.event job of unknown version 7" in line, line
    assert "askers were told to ask again" in line
    assert code == 0  # a warning: the bot works
