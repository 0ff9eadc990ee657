"""Prompt trimming and inline command parsing."""

from __future__ import annotations

from bot.commands import parse_command
from bot.prompt import build_prompt, prompt_budget
from inference.base import Turn
from inference.tokens import estimate_message_tokens


def test_everything_fits_when_short() -> None:
    history = [Turn("user", "q1"), Turn("assistant", "a1")]
    turns = build_prompt(
        system_prompt="sys", history=history, question="q2", budget_tokens=1000
    ).turns
    assert [t.role for t in turns] == ["system", "user", "assistant", "user"]
    assert turns[-1].content == "q2"


def test_oldest_turns_go_first_and_system_and_question_stay() -> None:
    history = []
    for i in range(50):
        history += [
            Turn("user", f"question {i} " + "x" * 300),
            Turn("assistant", f"answer {i} " + "y" * 300),
        ]
    question = "newest " + "z" * 600
    budget = 1000
    turns = build_prompt(
        system_prompt="sys", history=history, question=question, budget_tokens=budget
    ).turns
    assert turns[0] == Turn("system", "sys")
    assert turns[-1] == Turn("user", question)
    assert sum(estimate_message_tokens(t.content) for t in turns) <= budget
    kept = [t.content.split()[1] for t in turns[1:-1]]
    assert kept and kept[-1] == "49"  # the newest history survives
    assert turns[1].role == "user"  # no orphaned answer at the start


def test_question_stays_even_when_over_budget() -> None:
    question = "q" * 10_000
    turns = build_prompt(
        system_prompt="sys", history=[Turn("user", "old")], question=question, budget_tokens=100
    ).turns
    assert turns == [Turn("system", "sys"), Turn("user", question)]


def test_budget_leaves_room_for_the_answer() -> None:
    assert prompt_budget(4096) == 3072
    assert prompt_budget(512) == 256


def test_commands_are_recognised_with_arguments() -> None:
    cmd = parse_command("/premium  explain   this\nplease")
    assert cmd is not None and cmd.name == "premium" and cmd.argument == "explain   this\nplease"
    for word in ("reset", "help", "model", "ask", "search"):
        parsed = parse_command(f"/{word}")
        assert parsed is not None and parsed.name == word and parsed.argument == ""
    assert parse_command("/RESET").name == "reset"  # type: ignore[union-attr]


def test_paths_and_plain_text_are_not_commands() -> None:
    assert parse_command("/usr/bin/env python fails") is None
    assert parse_command("how do I /reset a branch?") is None
    assert parse_command("") is None


def test_unknown_commands_are_flagged() -> None:
    cmd = parse_command("/deploy prod")
    assert cmd is not None and cmd.name == "unknown" and cmd.word == "deploy"


def test_thread_context_comes_before_the_question_within_the_budget() -> None:
    from bot.prompt import CONTEXT_HEADING

    context = [Turn("user", f"person{i} wrote: " + "w" * 400) for i in range(30)]
    history = [Turn("user", "old question"), Turn("assistant", "old answer")]
    budget = 1000
    turns = build_prompt(
        system_prompt="sys",
        history=history,
        question="what did they mean?",
        budget_tokens=budget,
        context=context,
    ).turns
    assert turns[0] == Turn("system", "sys") and turns[-1] == Turn("user", "what did they mean?")
    shown = turns[-2]
    assert shown.role == "user" and shown.content.startswith(CONTEXT_HEADING)
    # The newest messages are kept, oldest first, within the budget.
    assert "person29 wrote" in shown.content and "person0 wrote" not in shown.content
    assert shown.content.index("person28") < shown.content.index("person29")
    assert sum(estimate_message_tokens(t.content) for t in turns) <= budget
    # Without context the prompt is as before.
    plain = build_prompt(system_prompt="sys", history=history, question="q", budget_tokens=budget)
    assert [t.content for t in plain.turns] == ["sys", "old question", "old answer", "q"]
