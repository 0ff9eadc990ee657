"""`chatbot chat` prints an answer's sources as a numbered list under it."""

from __future__ import annotations

import io

from adapters.console.chat import ConsoleSink
from bot.conversation import Citation


async def test_sources_are_printed_as_a_numbered_list_under_the_answer() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out)
    await sink.write("Deploy with make deploy [1].")
    await sink.cite(
        [Citation(1, "Deploy runbook", "https://wiki.example.com/deploy", "...")],
        searched=False,
        answer_id="a1",
    )
    await sink.close()
    assert out.getvalue() == (
        "Deploy with make deploy [1].\n\nSources:\n"
        "  [1] Deploy runbook <https://wiki.example.com/deploy>\n\n"
    )
