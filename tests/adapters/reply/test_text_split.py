"""Cutting long answers into messages: the one splitter both sinks use (adapters.reply)."""

from __future__ import annotations

import random
import re

import pytest

from adapters.reply.text_split import cut_for_limit, split_message, utf16_len
from adapters.slack.render import to_mrkdwn

# ------------------------------------------------------------------ as Slack splits (characters)

FENCE_LINE = re.compile(r"^\s*(`{3,}|~{3,})\S*\s*$")


def _content(text: str) -> str:
    """Non-whitespace content with fence lines removed (splitting may add fences)."""
    lines = [line for line in text.split("\n") if not FENCE_LINE.match(line)]
    return "".join("".join(lines).split())


def _fences_balanced(chunk: str) -> bool:
    return sum(1 for line in chunk.split("\n") if FENCE_LINE.match(line)) % 2 == 0


def test_empty_input_gives_no_messages() -> None:
    assert split_message("", 3500) == []
    assert split_message("  \n\n  ", 3500) == []


def test_short_text_is_one_message() -> None:
    assert split_message("hello\n\nworld", 3500) == ["hello\n\nworld"]


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


# ------------------------------------------------------------------ as Teams splits (UTF-16)


def test_utf16_length_counts_emoji_as_two() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("🎉") == 2
    assert utf16_len("é") == 1


def test_short_answers_are_one_message() -> None:
    assert split_message("Hello", 100, measure=utf16_len) == ["Hello"]


@pytest.mark.parametrize("limit", [64, 100, 250])
def test_long_answers_are_cut_at_paragraphs_within_the_limit(limit: int) -> None:
    text = "\n\n".join(f"Paragraph {i} " + "ab🎉 " * 10 for i in range(12))
    chunks = split_message(text, limit, measure=utf16_len)
    assert len(chunks) > 1
    assert all(utf16_len(c) <= limit for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


def test_a_code_block_cut_in_two_is_closed_and_reopened_with_its_language() -> None:
    code = "```python\n" + "\n".join(f"x = {i}" for i in range(40)) + "\n```"
    chunks = split_message("Intro.\n\n" + code + "\n\nOutro.", 120, measure=utf16_len)
    assert all(utf16_len(c) <= 120 for c in chunks)
    assert all(c.count("```") % 2 == 0 for c in chunks)
    assert sum(c.count("```python") for c in chunks) >= 2
    body = "\n".join(chunks)
    assert all(f"x = {i}\n" in body + "\n" for i in range(40))
    assert chunks[-1].endswith("Outro.")


def test_a_line_longer_than_a_message_is_cut_anyway() -> None:
    chunks = split_message("x" * 500, 100, measure=utf16_len)
    assert "".join(chunks) == "x" * 500
    assert all(utf16_len(c) <= 100 for c in chunks)


# ------------------------------------------------------------------ while streaming (cut_for_limit)


def test_streaming_cut_keeps_a_link_whole() -> None:
    link = "[the deploy runbook](https://wiki.example.com/runbooks/deploy)"
    current = "See "
    head, tail = cut_for_limit(current, f"also {link} now", 40)
    assert link not in head and tail.startswith(link)
    assert len(current + head) <= 40


def test_streaming_cut_closes_and_reopens_a_code_block_begun_earlier() -> None:
    current = "Run:\n\n```bash\necho start\n"
    text = "\n".join(f"echo {i}" for i in range(20)) + "\n```\nDone."
    head, tail = cut_for_limit(current, text, 60)
    assert head.endswith("\n```") and tail.startswith("```bash\n")
    assert len(head) <= 60
    assert (current + head).count("```") == 2


def test_streaming_cut_never_cuts_a_word_when_the_message_can_end_instead() -> None:
    head, tail = cut_for_limit("Some earlier text. ", "Supercalifragilistic", 10)
    assert (head, tail) == ("", "Supercalifragilistic")
    head, tail = cut_for_limit("Earlier. ", "one two three four", 12)
    assert (head, tail) == ("one two", "three four")


def test_streaming_cut_measures_in_utf16_for_teams() -> None:
    text = "🎉 " * 30
    head, tail = cut_for_limit("", text, 20, measure=utf16_len)
    assert utf16_len(head) <= 20 and head.endswith("🎉")
    assert (head + " " + tail).split() == text.split()
