"""The feedback a student receives: every question with its state, points and the check's message.

A question's state is pass, part (partial credit: the check's message says for what), fail or todo.
Where the sheet's own `student_id` differs from the name the hand-in is graded as (`student_id_mismatch`
in the result), the feedback says so first, and each question whose answer is right for the sheet's id
(`sheet_id_points`) says so in its message; the gradebook's message column carries the same flag for the
instructor. No points follow from either.
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


SHOWN_ID = 60                   # characters of an untrusted student id shown


def shown_id(text: str) -> str:
    """An untrusted student id quoted for the feedback: printable characters only, at most SHOWN_ID of them."""
    clean = "".join(c if c.isprintable() and c not in "`|\\" else "?" for c in str(text))
    return repr(clean[:SHOWN_ID] + ("…" if len(clean) > SHOWN_ID else ""))


def student_id_note(result: dict) -> str:
    """The sentence on a sheet whose student_id differs from the hand-in's name ('' where they match)."""
    sheet = result.get("student_id_mismatch")
    if sheet is None:
        return ""
    said = f"is {shown_id(sheet)}" if sheet else "is empty"
    name = shown_id(result["student"])
    return (f"The sheet's student_id {said} but the hand-in is graded as {name}, so questions whose cases depend "
            f"on the id were checked with the cases drawn for {name} (student_id = {name} in the sheet shows them).")


def sheet_id_note(result: dict, question: dict) -> str:
    """What one question's answer earns for the sheet's own student_id, where that is more ('' otherwise)."""
    if result.get("student_id_mismatch") is None or "sheet_id_points" not in question:
        return ""
    sheet = shown_id(result["student_id_mismatch"])
    right = "right" if question.get("sheet_id_state") == "pass" else "partly right"
    return (f"Your answer is {right} for the cases of the sheet's student_id {sheet} "
            f"({float(question['sheet_id_points']):g} / {float(question['max_points']):g} points there), "
            f"not for those of {shown_id(result['student'])}, which count; your instructor sees this.")


def gradebook_message(result: dict) -> str:
    """The gradebook's message for `result`: the student_id_mismatch flag (the sheet's id, the questions
    right for it) first, then the grader's message."""
    sheet = result.get("student_id_mismatch")
    if sheet is None:
        return result["message"]
    right = [qid for qid, q in result["questions"].items() if "sheet_id_points" in q]
    flag = (f"student_id_mismatch: the sheet's student_id is {shown_id(sheet)}, graded as "
            f"{shown_id(result['student'])}" + (f"; right for the sheet's id: {', '.join(right)}" if right else ""))
    return "; ".join([flag, *([result["message"]] if result["message"] else [])])


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
    if note := student_id_note(result):
        lines[2:2] = [f"**{note}**", ""]
    if result.get("message"):
        lines += [f"What the grader saw (cells counted from the top, text cells included): "
                  f"{_cell(result['message'])}", ""]
    lines += ["Points come from the grader's own run of the checks; your `check(...)` cells were not run.", "",
              "| question | result | points | help used | message |", "|---|---|---|---|---|"]
    for qid, q in result["questions"].items():
        message = " ".join(filter(None, (str(q["message"]), sheet_id_note(result, q))))
        lines.append(f"| `{qid}` | {MARKS[state_of(q)]} | {float(q['points']):g} / {float(q['max_points']):g} | "
                     f"{help_used(q) or '-'} | {_cell(message)} |")
    return "\n".join(lines) + "\n"
