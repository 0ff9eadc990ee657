"""Expected outages in the log: one line each, the traceback once at DEBUG."""

from __future__ import annotations

import logging

import pytest

from bot.outages import log_outage, reason


def test_one_line_each_time_and_the_traceback_once(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("bot.test_outages")
    caplog.set_level(logging.DEBUG, logger=log.name)
    for _ in range(3):
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 11434)")
        except OSError as exc:
            log_outage(log, "model server down", exc)
    lines = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in lines] == [
        "model server down (ConnectionRefusedError: [Errno 111] Connect call failed "
        "('127.0.0.1', 11434))"
    ] * 3
    assert [r.levelno for r in caplog.records if r.exc_info] == [logging.DEBUG]


def test_an_exception_that_says_nothing_names_its_cause() -> None:
    try:
        try:
            raise TimeoutError("no answer in 5 s")
        except TimeoutError as inner:
            raise RuntimeError() from inner
    except RuntimeError as exc:
        assert reason(exc) == "RuntimeError: TimeoutError: no answer in 5 s"
