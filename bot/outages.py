"""Expected outages (the model server down, the knowledge store held by another process,
the ledger or Redis unreachable) in the log: one line each time, the traceback once per
process at DEBUG, so that a question asked during an outage does not add 30 lines of the
same stack to the log. Bugs keep their tracebacks at ERROR (``log.exception``)."""

from __future__ import annotations

import logging

_SHOWN: set[tuple[str, str, type[BaseException]]] = set()
MAX_REASON_CHARS = 200


def log_outage(
    logger: logging.Logger, message: str, exc: BaseException, level: int = logging.WARNING
) -> None:
    """``message (ExcType: what it said)`` at ``level``; the traceback once at DEBUG."""
    logger.log(level, "%s (%s)", message, reason(exc))
    key = (logger.name, message, type(exc))
    if key not in _SHOWN:
        _SHOWN.add(key)
        logger.debug("%s: the first such traceback", message, exc_info=exc)


def reason(exc: BaseException) -> str:
    """An exception in one short line, with what it was raised from when it says nothing."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    cause = exc.__cause__ or exc.__context__
    if not text and cause is not None:
        return f"{type(exc).__name__}: {reason(cause)}"
    return f"{type(exc).__name__}: {text}"[:MAX_REASON_CHARS] if text else type(exc).__name__
