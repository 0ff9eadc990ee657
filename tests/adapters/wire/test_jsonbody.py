"""Bounded JSON bodies: one helper for every route that parses JSON."""

from __future__ import annotations

import json

import pytest

from adapters.wire.jsonbody import MAX_DEPTH, MalformedJson, json_object


def nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_nesting_up_to_the_limit_is_read_and_past_it_refused() -> None:
    assert json_object(nested(MAX_DEPTH))["a"] == json.loads(nested(MAX_DEPTH))["a"]
    with pytest.raises(MalformedJson, match="nests deeper than 64 levels"):
        json_object(nested(MAX_DEPTH + 1))
    with pytest.raises(MalformedJson):
        json_object(nested(100_000))


def test_brackets_inside_strings_do_not_count() -> None:
    text = "[{" * 200 + '\\"' + "[" * 100
    assert json_object(json.dumps({"text": text}))["text"] == text


@pytest.mark.parametrize("body", [b"", b"[1]", b'"x"', b"{bad", b"\xff"])
def test_anything_but_an_object_is_refused_with_a_reason(body: bytes) -> None:
    with pytest.raises(MalformedJson, match="the body is not"):
        json_object(body)
