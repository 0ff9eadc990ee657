"""Slack mrkdwn of answers while they stream, and of Markdown shapes models write that a
line-by-line reading got wrong (tables in lists, a URL as a link's text, indented code)."""

from __future__ import annotations

import pytest

from adapters.slack.render import to_mrkdwn

ANSWER = (
    "## Steps\n\n"
    "1. **Install** it:\n"
    "   ```bash\n   pip install foo\n   ```\n"
    "2. Set the port in `config.yaml` ([docs](https://foo.dev/config)).\n\n"
    "> **Note:** the default is 8080.\n\n"
    "| setting | default |\n|---|---:|\n| port | 8080 |\n| retries | 3 |\n\n"
    "---\n\nDone [1].\n"
)


def _fences(shown: str) -> int:
    return sum(line.removeprefix("> ").startswith("```") for line in shown.split("\n"))


def test_every_streamed_prefix_closes_its_code_blocks() -> None:
    # Slack shows each update of a streamed answer: a code block left open would swallow
    # everything after it.
    for end in range(len(ANSWER) + 1):
        shown = to_mrkdwn(ANSWER[:end])
        assert _fences(shown) % 2 == 0, ANSWER[:end]


def test_a_table_row_still_being_written_stays_in_its_table() -> None:
    table = "| setting | default |\n|---|---:|\n| port | 8080 |\n| retries | 3"
    assert to_mrkdwn(table) == (
        "```\nsetting | default\n--------+--------\nport    |    8080\nretries |       3\n```"
    )


def test_a_row_with_a_cell_too_few_or_too_many_stays_in_its_table() -> None:
    # Nothing the model wrote is dropped: a cell too many widens the table.
    assert to_mrkdwn("| a | b |\n|---|---|\n| 1 |\n| 2 | 3 | 4 |") == (
        "```\na | b |\n--+---+--\n1 |   |\n2 | 3 | 4\n```"
    )


def test_tables_inside_a_list_item_and_a_quote() -> None:
    assert to_mrkdwn("1. Set:\n   | k | v |\n   |---|---|\n   | a | 1 |\n2. Run") == (
        "1. Set:\n```\nk | v\n--+--\na | 1\n```\n2. Run"
    )
    assert to_mrkdwn("> | k |\n> |---|\n> | a |") == "> ```\n> k\n> -\n> a\n> ```"


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("Intro\n-", "Intro\n-"),  # the next item, or a rule, being written
        ("- a\n  -", "• a\n  -"),
        ("Intro\n--", "*Intro*"),  # a heading underline
        ("Text\n\n*", "Text\n\n*"),  # "**bold**" being written
    ],
)
def test_a_marker_being_written_does_not_flicker_into_a_heading_or_bullet(
    markdown: str, mrkdwn: str
) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_blank_lines_between_blocks_are_the_answers() -> None:
    assert to_mrkdwn("- a\n\n\nafter\n# H\ntext\n") == "• a\n\n\nafter\n*H*\ntext\n"


def test_an_address_as_a_links_text_is_not_a_second_link() -> None:
    assert to_mrkdwn("[see https://x.io/a](https://y.io)") == (
        "<https://y.io|see https://x.io/a (y.io)>"
    )


def test_a_code_block_that_starts_a_list_item_starts_its_own_line() -> None:
    assert to_mrkdwn("1. ```bash\n   make\n   ```\n2. done") == "1.\n```\nmake\n```\n2. done"


def test_indented_code_is_a_code_block() -> None:
    assert to_mrkdwn("Run:\n\n    make test\n") == "Run:\n\n```\nmake test\n```\n"


def test_a_look_alike_host_is_shown_as_the_browser_reaches_it() -> None:
    assert to_mrkdwn("[bank](https://exаmple.com/)") == (
        "<https://exаmple.com/|bank (xn--exmple-4nf.com)>"
    )
