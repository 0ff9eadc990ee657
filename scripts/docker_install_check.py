#!/usr/bin/env python3
"""Run the Dockerfile's install step outside Docker, so a broken one fails CI.

No Docker engine is needed: the build stage's COPY lines are replayed from the source tree
(filtered by .dockerignore, as `docker build` sends the context) into a scratch directory,
the stage's ENV is applied, its RUN line that calls scripts/install.sh runs there with a
throwaway virtualenv in place of the image's, and then the installed console script must
work from an unrelated directory: `chatbot --help`, and `chatbot db upgrade` on a fresh
SQLite file (so the migrations really are in the installed package, not just in the tree).

Usage: python3 scripts/docker_install_check.py   (standard library only; exit 0 = fine)
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = "scripts/install.sh"


class CheckFailed(Exception):
    """The Docker install step would fail; the message says why."""


@dataclass
class BuildStage:
    """The parts of the Dockerfile stage that installs the bot."""

    base: str
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[list[str], str, str]] = field(default_factory=list)  # sources, dest, cwd
    run: str = ""  # the shell command of the RUN line that calls scripts/install.sh
    run_workdir: str = "/"


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, args = pending.partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def _without_flags(args: str) -> tuple[list[str], str]:
    """Split leading `--flag=value` options (RUN --mount, COPY --chown) from the rest."""
    flags: list[str] = []
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.lstrip()
    return flags, rest


def build_stage(dockerfile: str) -> BuildStage:
    """The stage whose RUN line calls scripts/install.sh, with its COPY, ENV and WORKDIR."""
    args_before_from: dict[str, str] = {}
    stage: BuildStage | None = None
    for keyword, args in instructions(dockerfile):
        if keyword == "ARG" and stage is None:
            name, _, default = args.partition("=")
            args_before_from[name.strip()] = default.strip()
        elif keyword == "FROM":
            if stage is not None and stage.run:
                break
            image = args.split()[0]
            stage = BuildStage(
                base=re.sub(r"\$\{(\w+)\}", lambda m: args_before_from.get(m[1], ""), image)
            )
        elif stage is None:
            continue
        elif keyword == "WORKDIR":
            stage.workdir = str(PurePosixPath(stage.workdir, args))
        elif keyword == "ENV":
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                stage.env[name] = value
        elif keyword == "COPY":
            flags, rest = _without_flags(args)
            if any(flag.startswith("--from") for flag in flags):
                continue
            *sources, dest = shlex.split(rest)
            stage.copies.append((sources, dest, stage.workdir))
        elif keyword == "RUN" and INSTALL_SCRIPT in args:
            stage.run = _without_flags(args)[1]
            stage.run_workdir = stage.workdir
    if stage is None or not stage.run:
        raise CheckFailed(f"no RUN line in the Dockerfile calls {INSTALL_SCRIPT}")
    return stage


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


class DockerIgnore:
    """.dockerignore as `docker build` applies it: the last matching line wins, and a line
    matches a path when it matches the path or one of its parent directories."""

    def __init__(self, text: str) -> None:
        self._rules: list[tuple[bool, re.Pattern[str]]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            cleaned = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
            self._rules.append((keep, _pattern_regex(cleaned)))

    def ignored(self, relative: str) -> bool:
        """Whether the file at this context-relative path is left out of the build context."""
        parts = PurePosixPath(relative).parts
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for keep, regex in self._rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                result = not keep
        return result


def replay_copies(stage: BuildStage, context: Path, ignore: DockerIgnore, image_root: Path) -> None:
    """Copy what each COPY line would put in the image, below `image_root`."""
    for sources, dest, workdir in stage.copies:
        target = image_root / PurePosixPath(workdir, dest).relative_to("/")
        into_directory = dest.endswith("/") or len(sources) > 1
        for source in sources:
            origin = context / source
            files = (
                [origin]
                if origin.is_file()
                else sorted(p for p in origin.rglob("*") if p.is_file())
                if origin.is_dir()
                else []
            )
            files = [f for f in files if not ignore.ignored(f.relative_to(context).as_posix())]
            if not files:
                raise CheckFailed(
                    f"COPY {source}: not in the build context (missing, or left out by "
                    ".dockerignore), so `docker build` would fail"
                )
            for file in files:
                if origin.is_file():
                    path = target / file.name if into_directory else target
                else:
                    path = target / file.relative_to(origin)
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, path)


def _run(command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {shlex.join(command)}\n")
        out.flush()
        done = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise CheckFailed(f"`{shlex.join(command)}` exited {done.returncode}:\n{tail}")


def check(root: Path = ROOT) -> None:
    """Replay the install step and try the result; raise CheckFailed when it breaks."""
    stage = build_stage((root / "Dockerfile").read_text())
    ignore = DockerIgnore((root / ".dockerignore").read_text())
    wanted = re.search(r"python:(\d+)\.(\d+)", stage.base)
    if wanted and (int(wanted[1]), int(wanted[2])) != sys.version_info[:2]:
        print(f"note: the image uses {stage.base}, this check runs Python {sys.version.split()[0]}")
    venv_in_image = shlex.split(stage.run.split(INSTALL_SCRIPT, 1)[1])[0]
    with tempfile.TemporaryDirectory(prefix="docker-install-check-") as scratch:
        scratch_path = Path(scratch)
        image_root = scratch_path / "image"
        replay_copies(stage, root, ignore, image_root)
        venv = scratch_path / "venv"
        command = stage.run.replace(venv_in_image, str(venv))
        workdir = image_root / PurePosixPath(stage.run_workdir).relative_to("/")
        env = {**os.environ, **stage.env}
        log = scratch_path / "install.log"
        _run(["sh", "-c", command], cwd=workdir, env=env, log=log)

        elsewhere = scratch_path / "run"
        elsewhere.mkdir()
        run_env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        run_env["DATABASE_URL"] = f"sqlite:///{elsewhere / 'check.db'}"
        chatbot = str(venv / "bin" / "chatbot")
        _run([chatbot, "--help"], cwd=elsewhere, env=run_env, log=log)
        _run([chatbot, "db", "upgrade"], cwd=elsewhere, env=run_env, log=log)
        try:
            with closing(sqlite3.connect(elsewhere / "check.db")) as db:
                applied = db.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.Error:
            applied = []
        if not applied:
            raise CheckFailed("`chatbot db upgrade` applied no migration: are they packaged?")


def main() -> int:
    """Run the check and report in one line."""
    started = time.monotonic()
    try:
        check()
    except CheckFailed as exc:
        print(f"docker install check: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"docker install check: ok ({time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
