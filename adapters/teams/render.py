"""Teams rendering of model answers: the Markdown Teams shows (adapters.reply.text_split cuts).

Pure functions, no I/O. Teams renders a subset of Markdown in text messages (bold,
italic, strikethrough, lists, code, quotes, links) but not headings or rules, so those
become bold lines and a plain divider. Tables are left as they are: their pipes read well
enough, and rewriting them would change text already streamed.

Links follow ``adapters.reply.links``: only http, https and mailto, the host beside a link whose
text is not its address, images shown as links (Teams would fetch them).

Rewrites are line-local and a line is only rewritten once it is complete, so the
rendering of a prefix of an answer is a prefix of the rendering of the whole answer:
Teams refuses a streaming update that does not start with the previous one. That is why
this is not a Markdown parse like Slack's (``adapters.slack.parse``, mistune): a parse reads
a line by the lines after it (a heading underline, a table's delimiter row, a list's
looseness), which would change text already shown.
"""

from __future__ import annotations

import re

from adapters.reply.links import safe_links, settled

__all__ = ["to_teams_markdown"]

_RULE = "———"
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_HR = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
# A line that is still being written and might yet become a heading or a rule.
_UNSETTLED = re.compile(r"^ {0,3}(?:#|[-*_][-*_ \t]*$)")


def _rewrite(line: str) -> str:
    heading = _ATX.match(line)
    if heading is not None:
        title = heading.group(1).strip()
        return f"**{title}**" if title else ""
    if _HR.match(line):
        return _RULE
    return safe_links(line)


def to_teams_markdown(text: str, *, complete: bool = True) -> str:
    """Markdown that Teams renders. With ``complete=False`` (an answer still streaming),
    a last line that could still turn into a heading or rule is held back."""
    lines = text.split("\n")
    out: list[str] = []
    fence: str | None = None
    last = len(lines) - 1
    for index, line in enumerate(lines):
        partial = index == last and not complete
        opener = _FENCE.match(line)
        if fence is not None:
            out.append(line)
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                if not opener.group(2).strip():
                    fence = None
            continue
        if opener is not None:
            fence = opener.group(1)
            out.append(line)
            continue
        if partial:
            # Held back: only the line break before it is shown yet, or the part of the
            # line that no later text can turn into a link.
            out.append("" if _UNSETTLED.match(line) else safe_links(settled(line)[0]))
            continue
        out.append(_rewrite(line))
    return "\n".join(out)
