"""The doctor's report: one `Check` per line, the exit code, and the rendering."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.redact import redact

Status = Literal["OK", "WARN", "FAIL"]

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
TIMEOUT_SECONDS = 3.0
# However a check goes wrong, doctor answers within this long.
CHECK_DEADLINE_SECONDS = 20.0
_SLACK_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: how a dependency is, and for a problem how to fix it."""

    status: Status
    component: str
    what: str
    fix: str = ""


def safe(text: str) -> str:
    """Text with anything that looks like a secret replaced (error messages from drivers)."""
    return redact(text).text


def exit_code(checks: Sequence[Check]) -> int:
    """1 when anything required failed, else 0 (warnings do not count)."""
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def render(checks: Sequence[Check]) -> str:
    """The report: one line per check, a fix under each problem, and a summary."""
    width = max((len(c.component) for c in checks), default=8)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.component:<{width}}  {c.what}")
        if c.fix and c.status != "OK":
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    failures = sum(c.status == "FAIL" for c in checks)
    warnings = sum(c.status == "WARN" for c in checks)
    if failures:
        summary = f"{failures} problem(s), {warnings} warning(s): the bot cannot work as configured"
    elif warnings:
        summary = f"everything required works; {warnings} warning(s)"
    else:
        summary = "everything works"
    # A last pass: nothing that looks like a secret leaves doctor.
    return safe("\n".join([*lines, "", summary])) + "\n"
