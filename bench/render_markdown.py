"""Rendering speed: the shipped Markdown renderers against markdown-it-py's parser alone.

Issue 10 asked whether markdown-it-py tokens could replace the hand-written Slack renderer
(and render Teams text) without being slower. This prints, per answer shape, the time of the
shipped renderers and of markdown-it-py *parsing only* (no rendering yet, the least a
token-based renderer would cost), configured with just the rules the renderers need.
Run: `.venv/bin/python -m bench.render_markdown [--repeat N]`.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

from markdown_it import MarkdownIt

from adapters.slack.render import to_mrkdwn
from adapters.teams.render import to_teams_markdown

_SECTION = (
    "## Fix\n\nThe error comes from `dict.get` returning **None** [1]. See the "
    "[docs](https://docs.python.org/3/library/stdtypes.html#dict.get).\n\n"
    "```python\nvalue = data.get('key') or {}\nif not value:\n    raise KeyError('key')\n```\n\n"
    "- check *inputs* first\n- ~~ignore~~ handle errors [2]\n  - nested _detail_\n\n"
    "| option | default |\n|---|---:|\n| retries | 3 |\n| timeout | 30 |\n\n"
    "> Note: https://example.com/a_b_c explains it.\n\n---\n\n"
)
SHAPES = {
    "short answer (200 chars)": "Use `git rebase -i HEAD~3` and **squash** the commits [1].",
    "typical answer (2 KB)": _SECTION * 4,
    "long streamed segment (12 KB)": _SECTION * 24,
}

_INLINE = ["emphasis", "strikethrough", "backticks", "link", "image", "autolink", "escape"]
_BLOCK = ["heading", "lheading", "fence", "hr", "code", "blockquote", "list", "paragraph"]
SLACK_PARSER = MarkdownIt("zero", {"html": False}).enable(
    [*_BLOCK, "table", "reference", *_INLINE, "entity", "newline"]
)
# Teams only rewrites headings and rules: block structure is enough.
TEAMS_PARSER = MarkdownIt("zero", {"html": False}).enable(_BLOCK).disable("inline")


def _ms(render: Callable[[str], object], text: str, repeat: int) -> float:
    render(text)  # warm caches
    start = time.perf_counter()
    for _ in range(repeat):
        render(text)
    return (time.perf_counter() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, {args.repeat} runs each")
    print(f"{'answer':32} {'renderer':34} {'ms/render':>10}")
    for shape, text in SHAPES.items():
        rows = [
            ("Slack to_mrkdwn (shipped)", to_mrkdwn),
            ("markdown-it parse only (Slack)", SLACK_PARSER.parse),
            ("Teams to_teams_markdown (shipped)", to_teams_markdown),
            ("markdown-it blocks only (Teams)", TEAMS_PARSER.parse),
        ]
        for name, render in rows:
            print(f"{shape:32} {name:34} {_ms(render, text, args.repeat):10.3f}")


if __name__ == "__main__":
    main()
