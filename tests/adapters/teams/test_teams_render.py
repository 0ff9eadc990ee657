"""What Teams shows of a model's Markdown, and how long answers are cut into messages."""

from __future__ import annotations

from adapters.teams.render import to_teams_markdown

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


def test_citation_markers_stay_as_written() -> None:
    assert to_teams_markdown("Deploy [1].\n# Steps [2]\n- one [1][3]") == (
        "Deploy [1].\n**Steps [2]**\n- one [1][3]"
    )
