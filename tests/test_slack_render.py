"""Markdown -> Slack mrkdwn conversion and message splitting, as a Slack user would see them."""

from __future__ import annotations

import random
import re

import pytest

from adapters.slack.render import split_message, to_mrkdwn

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
        ("[docs](https://example.com/docs)", "<https://example.com/docs|docs>"),
        ('[docs](https://example.com "Title")', "<https://example.com|docs>"),
        ("[a **bold** label](https://x.io)", "<https://x.io|a bold label>"),
        (
            "[wiki](https://en.wikipedia.org/wiki/C_(lang))",
            "<https://en.wikipedia.org/wiki/C_(lang)|wiki>",
        ),
        ("[q](https://x.io/?a=1&b=2)", "<https://x.io/?a=1&b=2|q>"),
        ("[pipe](https://x.io/a|b)", "<https://x.io/a%7Cb|pipe>"),
        ("[https://x.io](https://x.io)", "<https://x.io>"),
        ("<https://example.com/x>", "<https://example.com/x>"),
        ("<dev@example.com>", "<mailto:dev@example.com|dev@example.com>"),
        ("![a diagram](https://img.example/d.png)", "<https://img.example/d.png|a diagram>"),
        ("![](https://img.example/d.png)", "<https://img.example/d.png>"),
        ("see https://example.com/a_b_c.", "see <https://example.com/a_b_c>."),
        ("(https://example.com/x)", "(<https://example.com/x>)"),
        ("[relative](./README.md)", "relative (./README.md)"),
        ("[ref][r1]\n\n[r1]: https://ref.example/x", "<https://ref.example/x|ref>\n"),
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
    assert to_mrkdwn("- **Note:** see [x](https://x.io)") == "• *Note:* see <https://x.io|x>"
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
        "<https://docs.python.org/3/library/stdtypes.html#dict.get|docs>.\n"
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


# --------------------------------------------------------------------------- split_message

FENCE_LINE = re.compile(r"^\s*(`{3,}|~{3,})\S*\s*$")


def _content(text: str) -> str:
    """Non-whitespace content with fence lines removed (splitting may add fences)."""
    lines = [line for line in text.split("\n") if not FENCE_LINE.match(line)]
    return "".join("".join(lines).split())


def _fences_balanced(chunk: str) -> bool:
    return sum(1 for line in chunk.split("\n") if FENCE_LINE.match(line)) % 2 == 0


def test_empty_input_gives_no_messages() -> None:
    assert split_message("") == []
    assert split_message("  \n\n  ") == []


def test_short_text_is_one_message() -> None:
    assert split_message("hello\n\nworld") == ["hello\n\nworld"]


def test_prefers_paragraph_boundaries() -> None:
    first = "First paragraph line one.\nFirst paragraph line two."
    second = "Second paragraph, which is also short."
    third = "Third paragraph."
    text = f"{first}\n\n{second}\n\n{third}"
    limit = len(first) + len(second) + 4
    assert split_message(text, limit) == [f"{first}\n\n{second}", third]


def test_falls_back_to_line_boundaries() -> None:
    lines = [f"line number {i:02d}" for i in range(10)]
    chunks = split_message("\n".join(lines), 50)
    assert all(len(chunk) <= 50 for chunk in chunks)
    assert [line for chunk in chunks for line in chunk.split("\n")] == lines


def test_hard_cut_prefers_spaces_and_keeps_everything() -> None:
    words = " ".join(f"word{i}" for i in range(100))
    chunks = split_message(words, 60)
    assert all(len(chunk) <= 60 for chunk in chunks)
    assert all(re.fullmatch(r"(word\d+ ?)+", chunk) for chunk in chunks)  # no word cut in half
    assert " ".join(chunks).split() == words.split()


def test_hard_cut_of_a_single_huge_word() -> None:
    chunks = split_message("x" * 250, 100)
    assert chunks == ["x" * 100, "x" * 100, "x" * 50]


def test_does_not_cut_inside_slack_links_or_entities() -> None:
    link = "<https://example.com/a/very/long/path|label>"
    text = "a" * 30 + link + " &amp; tail"
    for chunk in split_message(text, 50):
        assert chunk.count("<") == chunk.count(">")
        assert "&" not in chunk or "&amp;" in chunk


def test_code_block_kept_whole_when_it_fits_in_a_message() -> None:
    intro = "Here is the script:"
    code = "```bash\n" + "\n".join(f"echo {i}" for i in range(8)) + "\n```"
    outro = "Run it twice."
    chunks = split_message(f"{intro}\n\n{code}\n\n{outro}", len(code) + 2)
    assert chunks == [intro, code, outro]


def test_fence_split_is_closed_and_reopened_with_language() -> None:
    body = [f"print({i})" for i in range(40)]
    text = "Intro\n\n```python\n" + "\n".join(body) + "\n```\n\nOutro"
    chunks = split_message(text, 100)
    assert len(chunks) > 3
    code_chunks = [chunk for chunk in chunks if "print(" in chunk]
    for chunk in code_chunks:
        assert chunk.startswith("```python\n")
        assert chunk.rstrip().endswith("```") or chunk.endswith("Outro")
        assert _fences_balanced(chunk)
        assert len(chunk) <= 100
    printed = [line for chunk in code_chunks for line in chunk.split("\n") if "print(" in line]
    assert printed == body


def test_unterminated_fence_is_closed_in_every_chunk() -> None:
    text = "```\n" + "\n".join(f"row {i}" for i in range(30))
    chunks = split_message(text, 40)
    assert all(chunk.startswith("```\n") and chunk.endswith("\n```") for chunk in chunks)
    assert _content(text) == _content("".join(chunks))


def test_very_long_code_line_is_cut_inside_the_fence() -> None:
    text = "```js\n" + "x = [" + ", ".join(str(i) for i in range(200)) + "];\n```"
    chunks = split_message(text, 80)
    assert all(len(chunk) <= 80 and _fences_balanced(chunk) for chunk in chunks)
    assert all(chunk.startswith("```js\n") for chunk in chunks)
    assert _content(text) == _content("".join(chunks))


def test_mrkdwn_output_splits_cleanly() -> None:
    markdown = "# Title\n\n" + "\n\n".join(
        f"Paragraph {i} with **bold** and a [link](https://x.io/{i})." for i in range(60)
    )
    chunks = split_message(to_mrkdwn(markdown), 300)
    assert len(chunks) > 1
    assert all(len(chunk) <= 300 for chunk in chunks)
    # every message starts at a paragraph: no paragraph is split
    assert all(chunk.startswith(("*Title*", "Paragraph")) for chunk in chunks)


def _random_markdown(rng: random.Random) -> str:
    blocks: list[str] = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.4:
            lines = []
            for _ in range(rng.randint(1, 4)):
                words = [
                    "".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 12)))
                    for _ in range(rng.randint(1, 30))
                ]
                lines.append(" ".join(words))
            blocks.append("\n".join(lines))
        elif kind < 0.6:
            blocks.append("\n".join(f"- item {i} **x**" for i in range(rng.randint(1, 6))))
        elif kind < 0.9:
            lang = rng.choice(["python", "js", "", "bash"])
            code = []
            for _ in range(rng.randint(0, 15)):
                width = rng.choice([5, 20, 60, 200])
                code.append("".join(rng.choice("xyz =()\t") for _ in range(rng.randint(0, width))))
            blocks.append(f"```{lang}\n" + "\n".join(code) + "\n```")
        else:
            blocks.append("y" * rng.randint(50, 700))  # one enormous word
    separator = rng.choice(["\n\n", "\n", "\n\n\n"])
    text = separator.join(blocks)
    if rng.random() < 0.2:
        text += "\n```python\nunterminated = True\n" + "z" * rng.randint(0, 300)
    return text


def test_split_properties_over_generated_answers() -> None:
    rng = random.Random(20240601)
    for _ in range(400):
        text = _random_markdown(rng)
        limit = rng.choice([40, 60, 100, 250, 3500])
        chunks = split_message(text, limit)
        assert chunks, text
        for chunk in chunks:
            assert 0 < len(chunk) <= limit, (limit, chunk)
            assert chunk.strip()
            assert _fences_balanced(chunk), (limit, chunk)
        assert _content("\n".join(chunks)) == _content(text), (limit, text)


def test_reopened_fences_keep_their_language_over_generated_answers() -> None:
    rng = random.Random(99)
    for _ in range(100):
        lang = rng.choice(["python", "go", "sql"])
        lines = [f"stmt_{i} = {rng.randint(0, 10**6)}" for i in range(rng.randint(5, 60))]
        text = f"before\n\n```{lang}\n" + "\n".join(lines) + "\n```\n\nafter"
        chunks = split_message(text, rng.choice([45, 70, 120]))
        for chunk in chunks:
            if "stmt_" in chunk:
                assert f"```{lang}\n" in chunk
                assert _fences_balanced(chunk)


def test_split_rejects_nonsense_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_message("x", 0)
