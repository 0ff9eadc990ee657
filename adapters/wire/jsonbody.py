"""JSON request bodies parsed with bounds, for every route that reads JSON (Slack, Teams,
and the team API when it comes): one place that turns any body into a dict or a clear
reason for a 400, never a RecursionError and a 500."""

from __future__ import annotations

import json
from typing import Any

# Deeper than any payload Slack or Bot Framework sends (blocks and adaptive cards nest
# about 10 deep), far below what would exhaust Python's recursion limit downstream.
MAX_DEPTH = 64


class MalformedJson(ValueError):
    """A body that is not a JSON object within the bounds; the reason is safe to return."""


def json_object(
    body: bytes | str, what: str = "the body", max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """``body`` parsed as a JSON object nested at most ``max_depth`` deep."""
    raw = body.encode() if isinstance(body, str) else body
    # A body with fewer brackets than the limit cannot nest past it: most skip the walk.
    if raw.count(b"{") + raw.count(b"[") > max_depth:
        _check_depth_before_parsing(raw, what, max_depth)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedJson(f"{what} is not JSON") from exc
    if not isinstance(data, dict):
        raise MalformedJson(f"{what} is not a JSON object")
    return data


def _check_depth_before_parsing(raw: bytes, what: str, max_depth: int) -> None:
    """Refuse nesting past ``max_depth`` without building anything (strings skipped)."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            if depth > max_depth:
                raise MalformedJson(f"{what} nests deeper than {max_depth} levels")
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
