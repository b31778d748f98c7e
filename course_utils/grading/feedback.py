"""The feedback a student receives: every question with its state, points and the check's message.

A question's state is pass, part (partial credit: the check's message says for what), fail or todo.
"""
from __future__ import annotations

from .tables import MARKS, STATES, state_of

EXPLAIN = {
    "ok": "Your notebook ran to the end.",
    "error": "Some cells raised errors; the questions were graded on what your notebook defined.",
    "timeout": "Something ran past the time limit; it was stopped and the rest graded.",
    "killed": "Something ended the Python kernel (a crash, os._exit, exit() or the memory limit).",
    "invalid": "Not graded: the file is not this assignment's notebook, or it touched the grader's files.",
}


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def counts(result: dict) -> str:
    """How many questions are in each state, e.g. '3 pass, 1 part, 1 fail'."""
    states = [state_of(q) for q in result["questions"].values()]
    return ", ".join(f"{states.count(s)} {s}" for s in STATES if s in states)


def help_used(question: dict) -> str:
    """What the student asked for on one question: 'answer revealed', 'hints: 2', both, or ''."""
    parts = (["answer revealed"] if question.get("revealed") else []) + (
        [f"hints: {question['hints']}"] if question.get("hints") else [])
    return ", ".join(parts)


def render(assignment: str, result: dict) -> str:
    """Markdown feedback for one student's result row (student, status, questions, total, max, ...)."""
    lines = [f"# {assignment}: feedback for {result['student']}", "",
             f"**{result['total']:g} / {result['max']:g} points**, status `{result['status']}`: "
             f"{EXPLAIN.get(result['status'], '')}", "", f"Questions: {counts(result)}.", ""]
    if result.get("message"):
        lines += [f"What the grader saw (cells counted from the top, text cells included): "
                  f"{_cell(result['message'])}", ""]
    lines += ["Points come from the grader's own run of the checks; your `check(...)` cells were not run.", "",
              "| question | result | points | help used | message |", "|---|---|---|---|---|"]
    for qid, q in result["questions"].items():
        lines.append(f"| `{qid}` | {MARKS[state_of(q)]} | {float(q['points']):g} / {float(q['max_points']):g} | "
                     f"{help_used(q) or '-'} | {_cell(q['message'])} |")
    return "\n".join(lines) + "\n"
