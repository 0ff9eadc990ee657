"""What Teams shows of a model's Markdown, and how long answers are cut into messages."""

from __future__ import annotations

import pytest

from adapters.teams.render import split_message, to_teams_markdown, utf16_len

ANSWER = """\
# Reversing a list

Use **slicing** or `reversed()`:

```python
# the copy
items[::-1]
---
```

## Notes ##
- in place: `items.reverse()`
* * *
| a | b |
|---|---|
| 1 | 2 |

Done ~~maybe~~."""


def test_headings_become_bold_lines_and_rules_a_divider_outside_code() -> None:
    shown = to_teams_markdown(ANSWER)
    assert shown.startswith("**Reversing a list**\n\nUse **slicing**")
    assert "**Notes**\n- in place" in shown
    assert "\n———\n| a | b |" in shown
    # Inside a code block nothing changes.
    assert "```python\n# the copy\nitems[::-1]\n---\n```" in shown
    assert "| 1 | 2 |" in shown and "~~maybe~~" in shown


def test_every_streamed_prefix_is_a_prefix_of_the_final_message() -> None:
    # Teams refuses a streaming update that does not extend the previous one.
    final = to_teams_markdown(ANSWER)
    previous = ""
    for end in range(len(ANSWER) + 1):
        shown = to_teams_markdown(ANSWER[:end], complete=False)
        assert final.startswith(shown), ANSWER[:end]
        assert shown.startswith(previous)
        previous = shown


def test_a_line_being_written_that_may_become_a_heading_is_held_back() -> None:
    assert to_teams_markdown("Intro\n# Ti", complete=False) == "Intro\n"
    assert to_teams_markdown("Intro\n--", complete=False) == "Intro\n"
    assert to_teams_markdown("Intro\n- item", complete=False) == "Intro\n- item"


def test_utf16_length_counts_emoji_as_two() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("🎉") == 2
    assert utf16_len("é") == 1


def test_short_answers_are_one_message() -> None:
    assert split_message("Hello", 100) == ["Hello"]


@pytest.mark.parametrize("limit", [64, 100, 250])
def test_long_answers_are_cut_at_paragraphs_within_the_limit(limit: int) -> None:
    text = "\n\n".join(f"Paragraph {i} " + "ab🎉 " * 10 for i in range(12))
    chunks = split_message(text, limit)
    assert len(chunks) > 1
    assert all(utf16_len(c) <= limit for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


def test_a_code_block_cut_in_two_is_closed_and_reopened_with_its_language() -> None:
    code = "```python\n" + "\n".join(f"x = {i}" for i in range(40)) + "\n```"
    chunks = split_message("Intro.\n\n" + code + "\n\nOutro.", 120)
    assert all(utf16_len(c) <= 120 for c in chunks)
    assert all(c.count("```") % 2 == 0 for c in chunks)
    assert sum(c.count("```python") for c in chunks) >= 2
    body = "\n".join(chunks)
    assert all(f"x = {i}\n" in body + "\n" for i in range(40))
    assert chunks[-1].endswith("Outro.")


def test_a_line_longer_than_a_message_is_cut_anyway() -> None:
    chunks = split_message("x" * 500, 100)
    assert "".join(chunks) == "x" * 500
    assert all(utf16_len(c) <= 100 for c in chunks)
