"""The Makefile a newcomer runs first: tools through `python -m` (no console script that an
interrupted install may have left out), and an install that is redone until it finished."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import REPO

ROOT = REPO
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _dry_run(venv: Path, target: str) -> str:
    assert MAKE is not None
    result = subprocess.run(
        [MAKE, "-n", "-C", str(ROOT), f"VENV={venv}", target],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_tool_runs_through_the_venvs_python() -> None:
    recipes = [
        line.strip()
        for line in (ROOT / "Makefile").read_text().splitlines()
        if line.startswith("\t")
    ]
    # Only the interpreter itself is called by path (PY); every tool is `python -m tool`.
    assert [line for line in recipes if "bin/" in line] == []
    for tool in ("ruff check", "ruff format", "mypy", "pytest"):
        assert any(f"$(PY) -m {tool}" in line for line in recipes), tool


def test_an_interrupted_install_is_redone_and_a_finished_one_is_not(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    # A half-made venv, as a Ctrl-C during the first `make run` leaves it: no stamp.
    plan = _dry_run(venv, "test")
    assert "pip install" in plan and "-c requirements.lock" in plan
    assert plan.index("pip install") < plan.index("-m pytest")
    # Finished: the stamp is written last, and nothing is installed again.
    stamp = venv / ".installed"
    stamp.touch()
    later = time.time() + 5
    os.utime(stamp, (later, later))
    assert "pip install" not in _dry_run(venv, "test")


def test_a_fresh_clone_chats_with_one_command(tmp_path: Path) -> None:
    """`make chat` on a clone with no venv installs first, then starts the chat (which
    creates the tables itself: tests/adapters/console/test_chat_terminal.py), as the Quick
    start promises."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    plan = _dry_run(venv, "chat")
    assert "pip install" in plan and "-m adapters.cli chat" in plan
    assert plan.index("pip install") < plan.index("-m adapters.cli chat")


def test_make_test_builds_the_manual_and_fails_on_a_broken_link(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    plan = _dry_run(venv, "test")
    assert "-m mkdocs build --strict" in plan
    assert plan.index("-m mkdocs build") < plan.index("-m pytest")
