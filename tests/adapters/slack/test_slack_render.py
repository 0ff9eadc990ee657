"""Markdown -> Slack mrkdwn conversion and message splitting, as a Slack user would see them."""

from __future__ import annotations

import random

import pytest

from adapters.slack.render import to_mrkdwn

# --------------------------------------------------------------------------- to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold**", "*bold*"),
        ("__bold__", "*bold*"),
        ("*italic*", "_italic_"),
        ("_italic_", "_italic_"),
        ("~~gone~~", "~gone~"),
        ("***both***", "_*both*_"),
        ("**bold** then *italic*.", "*bold* then _italic_."),
        ("*an **inner** bold*", "_an *inner* bold_"),
        ("(**x**)", "(*x*)"),
    ],
)
def test_emphasis(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    "text",
    [
        "snake_case_name stays",
        "2*3*4 is arithmetic",
        "a * b * c",
        "**never closed",
        "a__b__c and x**y**z",
    ],
)
def test_text_that_is_not_emphasis_stays(text: str) -> None:
    assert to_mrkdwn(text) == text


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("# Title", "*Title*"),
        ("### Third level", "*Third level*"),
        ("###### Sixth ######", "*Sixth*"),
        ("# Uses **bold** inside", "*Uses bold inside*"),
        ("## With `code`", "*With `code`*"),
        ("Setext one\n==========", "*Setext one*"),
        ("Setext two\n----------", "*Setext two*"),
        ("#hashtag is not a heading", "#hashtag is not a heading"),
    ],
)
def test_headings_become_bold_lines(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("[docs](https://example.com/docs)", "<https://example.com/docs|docs (example.com)>"),
        ('[docs](https://example.com "Title")', "<https://example.com|docs (example.com)>"),
        ("[a **bold** label](https://x.io)", "<https://x.io|a bold label (x.io)>"),
        (
            "[wiki](https://en.wikipedia.org/wiki/C_(lang))",
            "<https://en.wikipedia.org/wiki/C_(lang)|wiki (en.wikipedia.org)>",
        ),
        ("[q](https://x.io/?a=1&b=2)", "<https://x.io/?a=1&b=2|q (x.io)>"),
        ("[pipe](https://x.io/a|b)", "<https://x.io/a%7Cb|pipe (x.io)>"),
        ("[https://x.io](https://x.io)", "<https://x.io>"),
        ("<https://example.com/x>", "<https://example.com/x>"),
        ("<dev@example.com>", "<mailto:dev@example.com|dev@example.com>"),
        (
            "![a diagram](https://img.example/d.png)",
            "<https://img.example/d.png|a diagram (img.example)>",
        ),
        ("![](https://img.example/d.png)", "<https://img.example/d.png>"),
        ("see https://example.com/a_b_c.", "see <https://example.com/a_b_c>."),
        ("(https://example.com/x)", "(<https://example.com/x>)"),
        ("[relative](./README.md)", "relative (./README.md)"),
        ("[ref][r1]\n\n[r1]: https://ref.example/x", "<https://ref.example/x|ref (ref.example)>\n"),
        ("[not a link] stays", "[not a link] stays"),
    ],
)
def test_links(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_lists() -> None:
    markdown = (
        "- one\n  - nested\n    * deeper\n+ plus\n1. first\n2) second\n- [ ] todo\n- [x] done"
    )
    assert to_mrkdwn(markdown) == (
        "• one\n  • nested\n    • deeper\n• plus\n1. first\n2) second\n• ☐ todo\n• ☑ done"
    )


def test_list_items_get_inline_conversion() -> None:
    assert to_mrkdwn("- **Note:** see [x](https://x.io)") == "• *Note:* see <https://x.io|x (x.io)>"
    assert to_mrkdwn("3. use `a*b*c`") == "3. use `a*b*c`"


def test_quotes_stay_quotes() -> None:
    assert to_mrkdwn("> a **wise** quote\n>\n> - item") == "> a *wise* quote\n>\n> • item"
    assert to_mrkdwn(">> nested") == "> nested"


@pytest.mark.parametrize("rule", ["---", "***", "___", "- - -", " * * *"])
def test_horizontal_rules(rule: str) -> None:
    assert to_mrkdwn(f"above\n\n{rule}\n\nbelow") == "above\n\n———\n\nbelow"


def test_table_becomes_aligned_code_block() -> None:
    markdown = (
        "| Name | Qty | Note |\n"
        "|:-----|----:|:----:|\n"
        "| **apple** | 3 | a & b |\n"
        "| kiwi | 12 | [site](https://k.io) |\n"
        "\n"
        "after"
    )
    assert to_mrkdwn(markdown) == (
        "```\n"
        "Name  | Qty |        Note\n"
        "------+-----+--------------------\n"
        "apple |   3 |        a &amp; b\n"
        "kiwi  |  12 | site (https://k.io)\n"
        "```\n"
        "\n"
        "after"
    )


def test_table_columns_line_up_by_display_width() -> None:
    rendered = to_mrkdwn("| k | v |\n|---|---|\n| x & y | 1 |\n| 日本 | 22 |")
    rows = rendered.split("\n")[1:-1]
    unescaped = [row.replace("&amp;", "&") for row in rows]
    assert unescaped[0].index("|") == unescaped[2].index("|")
    # the CJK row is two characters that take four columns
    assert unescaped[3].index("|") == unescaped[2].index("|") - 2


def test_pipes_without_a_delimiter_row_are_text() -> None:
    assert to_mrkdwn("a | b\nc | d") == "a | b\nc | d"


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("AT&T < MCI > none", "AT&amp;T &lt; MCI &gt; none"),
        ("<b>html</b>", "&lt;b&gt;html&lt;/b&gt;"),
        # a model cannot ping anyone: Slack's special sequences are escaped
        ("<!channel> <@U123> <#C1>", "&lt;!channel&gt; &lt;@U123&gt; &lt;#C1&gt;"),
        # Markdown entities are text, not double-escaped
        ("&lt;tag&gt; &amp; &copy;", "&lt;tag&gt; &amp; ©"),
        ("\\*literal\\* \\<x\\>", "*literal* &lt;x&gt;"),
    ],
)
def test_escaping(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_fenced_code_is_kept_except_escaping_and_language_tag() -> None:
    code = 'if a < b && c > d:\n    print("**not bold** [x](y) _z_ # no heading")\n\n- no bullet'
    escaped = code.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    markdown = f"Run this:\n\n```python\n{code}\n```\n\nThen **done**."
    assert to_mrkdwn(markdown) == f"Run this:\n\n```\n{escaped}\n```\n\nThen *done*."


def test_tilde_fences_and_longer_fences() -> None:
    assert to_mrkdwn("~~~js\nlet x = 1;\n~~~") == "```\nlet x = 1;\n```"
    assert to_mrkdwn("````md\n```\ninner\n```\n````") == "```\n```\ninner\n```\n```"


def test_fence_indented_in_a_list() -> None:
    markdown = "1. Install:\n   ```bash\n   pip install x\n   ```\n2. Run"
    assert to_mrkdwn(markdown) == "1. Install:\n```\npip install x\n```\n2. Run"


def test_unterminated_fence_is_closed_and_does_not_leak() -> None:
    rendered = to_mrkdwn("Answer:\n```python\ndef f(x):\n    return x * 2 **")
    assert rendered == "Answer:\n```\ndef f(x):\n    return x * 2 **\n```"
    # what comes after a cut stream is converted again once the fence closes
    rendered = to_mrkdwn("```\ncode\n```\n**bold**")
    assert rendered == "```\ncode\n```\n*bold*"


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("use `**kwargs` here", "use `**kwargs` here"),
        ("`a < b & c`", "`a &lt; b &amp; c`"),
        ("`[x](https://y)`", "`[x](https://y)`"),
        ("``code with ` tick``", "``code with ` tick``"),
        ("`` `x` ``", "`` `x` ``"),
        ("``double``", "`double`"),
        ("a ` lone backtick", "a ` lone backtick"),
        ("**bold `code`**", "*bold `code`*"),
    ],
)
def test_inline_code(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_code_content_survives_any_markup_characters() -> None:
    rng = random.Random(7)
    alphabet = "ab *_~[]()<>&#>-+|!\\\t"
    for _ in range(300):
        code = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        code = code.replace("\n", "")
        escaped = code.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert to_mrkdwn(f"```\n{code}\n```") == f"```\n{escaped}\n```"


def test_a_typical_answer() -> None:
    markdown = (
        "## Fix\n"
        "\n"
        "The error comes from `dict.get` returning **None**. See the "
        "[docs](https://docs.python.org/3/library/stdtypes.html#dict.get).\n"
        "\n"
        "```python\n"
        "value = data.get('key') or {}\n"
        "```\n"
        "\n"
        "- check *inputs*\n"
        "- ~~ignore~~ handle errors\n"
    )
    assert to_mrkdwn(markdown) == (
        "*Fix*\n"
        "\n"
        "The error comes from `dict.get` returning *None*. See the "
        "<https://docs.python.org/3/library/stdtypes.html#dict.get|docs (docs.python.org)>.\n"
        "\n"
        "```\n"
        "value = data.get('key') or {}\n"
        "```\n"
        "\n"
        "• check _inputs_\n"
        "• ~ignore~ handle errors\n"
    )


def test_empty_and_plain() -> None:
    assert to_mrkdwn("") == ""
    assert to_mrkdwn("just words\nover lines") == "just words\nover lines"


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("Deploy with make [1].", "Deploy with make [1]."),
        ("Both agree [1][2], see **this** [3]", "Both agree [1][2], see *this* [3]"),
        ("- a step [2]\n# Heading [1]", "• a step [2]\n*Heading [1]*"),
    ],
)
def test_citation_markers_stay_as_written(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn
