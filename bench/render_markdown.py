"""Rendering speed: microseconds of CPU per answer for the shipped Markdown renderers.

Slack's ``to_mrkdwn`` (mistune's parse, ``adapters.slack.parse``, and the walk over its
tree) and Teams' ``to_teams_markdown`` (line-local rewrites), beside mistune's and
markdown-it-py's parse alone (no rendering) for scale. A streamed Slack message is rendered
again at each update, and holds up to 3,500 characters (about twice the typical shape);
the long shape is a whole long answer rendered at once (an ephemeral reply).
CPU time (``time.process_time``), best of ``--rounds``, so other load on the machine
matters less; the load average is printed with the figures.
Run: `.venv/bin/python -m bench.render_markdown [--repeat N] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import mistune
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
    "short answer (58 chars)": "Use `git rebase -i HEAD~3` and **squash** the commits [1].",
    "typical answer (1.7 KB)": _SECTION * 4,
    "long answer (10 KB)": _SECTION * 24,
}

MISTUNE = mistune.create_markdown(renderer=None, plugins=["strikethrough", "table", "task_lists"])
MARKDOWN_IT = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def _us(render: Callable[[str], object], text: str, repeat: int, rounds: int) -> float:
    render(text)  # warm caches
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeat):
            render(text)
        best = min(best, (time.process_time() - start) / repeat)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=100, help="renders per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is shown")
    args = parser.parse_args()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"Python {platform.python_version()} on {platform.machine()}, mistune "
        f"{mistune.__version__}; best of {args.rounds} x {args.repeat} runs; load {load}"
    )
    print(f"{'answer':26} {'renderer':36} {'µs CPU/answer':>14}")
    rows: list[tuple[str, Callable[[str], object]]] = [
        ("Slack to_mrkdwn (shipped)", to_mrkdwn),
        ("mistune parse only", MISTUNE),
        ("markdown-it-py parse only", MARKDOWN_IT.parse),
        ("Teams to_teams_markdown (shipped)", to_teams_markdown),
    ]
    for shape, text in SHAPES.items():
        for name, render in rows:
            print(f"{shape:26} {name:36} {_us(render, text, args.repeat, args.rounds):14.0f}")


if __name__ == "__main__":
    main()
