"""git sources fail alone and fast, and git sees none of the bot's secrets: a remote whose
ssh hangs (its child keeping git's pipes open) fails within the timeout and leaves no
process behind, also under Ctrl-C and in `chatbot doctor`; git gets a minimal
environment, only the https, ssh (and, when named, file) protocols, and a size cap."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inference.knowledge.loaders import LoadOptions, SourceFailed, checkout, load, run_git
from inference.knowledge.sources import parse_source
from tests.fakes.ollama import FakeOllama
from tests.support.knowledge_helpers import MODEL, index_environment, stack, write

HANGING = "git+ssh://git@unreachable-host/x.git"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    async with FakeOllama([MODEL]) as server:
        yield server


def hanging_ssh(tmp_path: Path) -> tuple[Path, Path]:
    """An ssh stand-in that never answers and starts a child holding git's pipes, as a
    real ssh to an unreachable host does; (script, file where it writes its child's pid)."""
    pidfile = tmp_path / "ssh-child.pid"
    script = tmp_path / "ssh"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\nwait\n")
    script.chmod(0o755)
    return script, pidfile


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            state = next(line for line in status if line.startswith("State:"))
    except FileNotFoundError:
        return False
    return "zombie" not in state


async def wait_until(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_hanging_remote_fails_within_its_timeout_and_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, pidfile = hanging_ssh(tmp_path)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(script))
    started = time.monotonic()
    with pytest.raises(SourceFailed) as failed:
        async with asyncio.timeout(30):  # before the fix: never returns
            async for _ in load(
                parse_source(HANGING),
                git_cache=tmp_path / "git",
                options=LoadOptions(git_timeout=2),
            ):
                pass
    assert time.monotonic() - started < 15
    assert str(failed.value) == "git fetch took longer than 2 s"
    pid = int(pidfile.read_text())
    await wait_until(lambda: not alive(pid))


async def test_index_with_a_hanging_remote_stops_on_ctrl_c_in_one_line(
    tmp_path: Path, fake: FakeOllama
) -> None:
    script, pidfile = hanging_ssh(tmp_path)
    env = index_environment(
        tmp_path, fake, HANGING, REDIS_URL="redis://127.0.0.1:1/0", GIT_SSH_COMMAND=str(script)
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.cli", "index", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 60)
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130
    assert err.decode().strip() == (
        "chatbot index: interrupted; what was embedded so far stays in the index, "
        "and the next run goes on from there"
    )
    assert "Traceback" not in out.decode()
    pid = int(pidfile.read_text())
    await wait_until(lambda: not alive(pid))


async def test_doctor_checks_each_source_apart_when_one_hangs(
    tmp_path: Path, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.app.settings import Settings
    from adapters.doctor import knowledge as knowledge_doctor

    script, _ = hanging_ssh(tmp_path)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(script))
    docs = write(tmp_path / "docs", {"a.md": "# A\n\nalpha\n"})
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        knowledge_sources=f"{HANGING},{docs}",
        knowledge_store=str(tmp_path / "store"),
        ollama_base_url=fake.url,
        embedding_model=MODEL,
        redis_url="redis://127.0.0.1:1/0",
    )
    checks = await asyncio.wait_for(knowledge_doctor.check_knowledge(settings), 30)
    lines = {c.what: c.status for c in checks}
    assert lines[f"source {docs} is reachable"] == "OK"
    assert lines["source git+ssh://unreachable-host/x.git cannot be read: git ls-remote took "
                 "longer than 10 s"] == "WARN"  # fmt: skip
    assert lines[f"{MODEL} embeds (64 dimensions)"] == "OK"


async def test_git_runs_without_the_bots_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret-never-shown")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-never-shown")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Docs Bot")
    env = await run_git("-c", "alias.env=!env", "env")
    assert "never-shown" not in env
    assert "GIT_AUTHOR_NAME=Docs Bot" in env and "GIT_CONFIG_NOSYSTEM=1" in env
    [path] = [line for line in env.splitlines() if line.startswith("PATH=")]
    assert path.endswith(os.environ["PATH"])  # git puts its own directory first


async def test_only_https_ssh_and_named_local_repositories_are_reached(
    tmp_path: Path, fake: FakeOllama
) -> None:
    witness = tmp_path / "ran"
    repo = write(tmp_path / "repo", {"README.md": "# R\n\nhello\n"})
    identity = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
                "GIT_COMMITTER_EMAIL": "a@b"}  # fmt: skip
    for args in (("init", "-q", "-b", "main"), ("add", "."), ("commit", "-qm", "c")):
        await asyncio.to_thread(
            subprocess.run, ["git", *args], cwd=repo, check=True, capture_output=True,
            env={**os.environ, **identity},
        )  # fmt: skip
    async with stack(tmp_path, fake) as s:
        ext, local = await s.index(f"git+ext::sh -c touch\\ {witness},git+file://{repo}#main")
    assert ext.error == "git fetch failed: fatal: transport 'ext' not allowed"
    assert not witness.exists()
    assert local.ok and local.documents_added == 1
    with pytest.raises(SourceFailed, match="the checkout would be 0 MB; the cap is 0 MB"):
        await checkout(parse_source(f"git+file://{repo}#main"), tmp_path / "git2", max_bytes=5)
