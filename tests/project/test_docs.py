"""The README is the door (short, the two commands, links that lead somewhere) and the manual
in docs/ is what CI and the Quick start say it is."""

from __future__ import annotations

import re
from pathlib import Path

from markdown.extensions.toc import slugify

from tests.support import REPO

ROOT = REPO
README = ROOT / "README.md"
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs gives the headings of a page (toc's default slugify)."""
    prose = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)  # no code blocks
    headings = re.findall(r"^#{1,6} +(.+?) *$", prose, re.M)
    return {slugify(heading.replace("`", ""), "-") for heading in headings}


def test_the_readme_is_a_door_not_the_manual() -> None:
    assert len(README.read_text().splitlines()) < 200


def test_the_quick_start_is_two_make_commands_after_ollama() -> None:
    quick = _section(README.read_text(), "Quick start")
    blocks = re.findall(r"```sh\n(.*?)```", quick, re.S)
    commands = [
        line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line
    ]
    ollama = [c for c in commands if c.startswith("ollama ")]
    assert ollama and commands[: len(ollama)] == ollama
    assert commands[len(ollama) :] == ["make chat", "make test"]
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), re.M))
    assert {"chat", "test"} <= targets


def test_ci_runs_the_readmes_test_command() -> None:
    ci = [
        line.strip()
        for line in (ROOT / ".ci/run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci[-1] == "make test"
    assert "make test" in _section(README.read_text(), "Quick start")


def test_every_link_of_the_readme_leads_to_a_file_and_heading_that_exist() -> None:
    links = [link for link in _LINK.findall(README.read_text()) if "://" not in link]
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), link
        if anchor:
            assert anchor in _anchors(target), link
