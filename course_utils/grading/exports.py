"""Exports of the grader's results: Gradescope results.json, a Canvas gradebook import, HTML feedback.

Gradescope: one `results.json` per student in the autograder format (overall `score`, one test
per question with `name`, `score`, `max_score`, `output` in Markdown starting with the question's
state; Gradescope's `status` is `passed` only for full points, partial credit shows as its score). Canvas: a CSV with the
gradebook-import columns `Student, ID, SIS User ID, SIS Login ID, Section` and one assignment
column, built from a roster the instructor exports from Canvas; its `Points Possible` row sets a
new assignment's points. HTML feedback: the content of feedback.md, every value escaped.
"""
from __future__ import annotations

import csv
import html
import json
from dataclasses import dataclass
from pathlib import Path

from .feedback import EXPLAIN, counts, help_used
from .tables import MARKS, StudentResult, number, state_of, write_csv

CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
ROSTER_ALIASES = {"student_id": "student_id", "student id": "student_id", "student": "Student", "name": "Student",
                  "student name": "Student", "canvas id": "ID",
                  "id": "ID", "sis user id": "SIS User ID", "sis_user_id": "SIS User ID", "sis id": "SIS User ID",
                  "sis login id": "SIS Login ID", "sis_login_id": "SIS Login ID", "section": "Section"}


def _markdown_text(text: str) -> str:
    """A check's message for Markdown output: raw HTML neutralised, whitespace kept readable."""
    return html.escape(str(text), quote=False)


def gradescope_results(result: dict, score: float | None = None, note: str = "") -> dict:
    """The Gradescope autograder results.json for one result dict (`score` overrides the total, e.g.
    after a late penalty that `note` explains)."""
    tests = [{"name": qid, "number": str(i), "score": float(q["points"]), "max_score": float(q["max_points"]),
              "status": "passed" if state_of(q) == "pass" else "failed",
              "output": f"{MARKS[state_of(q)]}: {_markdown_text(q.get('message', ''))}", "output_format": "md"}
             for i, (qid, q) in enumerate(result["questions"].items(), start=1)]
    summary = f"**{float(result['total']):g} / {float(result['max']):g} points**, status `{result['status']}`: " \
              f"{EXPLAIN.get(result['status'], '')} Questions: {counts(result)}."
    if result.get("message"):
        summary += f"\n\nWhat the grader saw: {_markdown_text(result['message'])}"
    if note:
        summary += f"\n\n{_markdown_text(note)}"
    return {"score": float(result["total"] if score is None else score), "output": summary, "output_format": "md",
            "test_output_format": "md", "execution_time": float(result.get("seconds", 0)), "tests": tests}


def write_gradescope(results: dict[str, StudentResult], scores: dict[str, float] | None = None,
                     notes: dict[str, str] | None = None) -> list[Path]:
    """Entry point: write `results.json` in every student's feedback folder (`scores` and `notes`
    per student, e.g. from the late policy); return the paths."""
    paths = []
    for student, r in sorted(results.items()):
        path = r.folder / "results.json"
        data = gradescope_results(r.result, (scores or {}).get(student), (notes or {}).get(student, ""))
        path.write_text(json.dumps(data, indent=1),
                        encoding="utf-8")
        paths.append(path)
    return paths


@dataclass(frozen=True)
class RosterEntry:
    """One student of the Canvas roster, keyed by the grader's student id."""

    student: str
    name: str
    canvas_id: str
    sis_user_id: str
    sis_login_id: str = ""
    section: str = ""


def read_roster(path: Path) -> dict[str, RosterEntry]:
    """The roster CSV: `student_id` (the grader's id) and Canvas's Student (the name), ID, SIS User ID
    (and optionally SIS Login ID, Section); without `student_id`, SIS Login ID is the grader's id."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"the roster {path} is empty.")
    header = [ROSTER_ALIASES.get(h.strip().lower(), h.strip()) for h in rows[0]]
    key = "student_id" if "student_id" in header else "SIS Login ID"
    missing = [c for c in (key, "Student", "ID", "SIS User ID") if c not in header]
    if missing:
        raise ValueError(f"the roster {path} has no column {', '.join(missing)} (it has {rows[0]}); give the "
                         "grader's student id as `student_id` and Canvas's Student, ID and SIS User ID, "
                         "e.g. from Canvas's gradebook export.")
    roster: dict[str, RosterEntry] = {}
    for line, values in enumerate(rows[1:], start=2):
        r = dict(zip(header, (v.strip() for v in values)))
        if not any(values) or r.get("Student", "").strip() == "Points Possible":
            continue
        if r.get(key, "") in roster:
            raise ValueError(f"the roster {path} lists {r[key]!r} twice (line {line}).")
        roster[r.get(key, "")] = RosterEntry(*(r.get(c, "") for c in (key, "Student", "ID", "SIS User ID",
                                                                       "SIS Login ID", "Section")))
    return roster


def canvas_rows(totals: dict[str, float], roster: dict[str, RosterEntry], column: str,
                points_possible: float) -> list[list[str]]:
    """The Canvas import table (header, Points Possible row, one row per roster student).

    A roster student with no total gets an empty cell (Canvas leaves that grade unchanged); a graded
    student missing from the roster is an error, so that no grade is silently dropped.
    """
    unknown = sorted(set(totals) - set(roster))
    if unknown:
        raise ValueError(f"{len(unknown)} graded students are not in the roster: {', '.join(unknown[:10])}; "
                         "add them (column `student_id` = the grader's id) or fix their ids.")
    rows = [CANVAS_COLUMNS + [column], ["    Points Possible", "", "", "", ""] + [f"{points_possible:g}"]]
    for sid, e in sorted(roster.items(), key=lambda kv: kv[1].name):
        score = totals.get(sid)
        rows.append([e.name, e.canvas_id, e.sis_user_id, e.sis_login_id, e.section,
                     "" if score is None else f"{score:g}"])
    return rows


def write_canvas(totals: dict[str, float], roster_csv: Path, out: Path, column: str,
                 points_possible: float) -> Path:
    """Entry point: the Canvas gradebook-import CSV for `totals` (student -> points).

    `column` is the assignment column: "Name (Canvas assignment id)" for an existing assignment,
    or a new name to create one.
    """
    rows = canvas_rows(totals, read_roster(roster_csv), column, points_possible)
    write_csv(out, rows[0], rows[1:])
    return Path(out)


def totals_of(rows: list[dict[str, str]]) -> dict[str, float]:
    """Student -> total from gradebook rows."""
    return {r["student"]: number(r["total"], f"the total of {r['student']!r}") for r in rows}


STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;line-height:1.4}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;vertical-align:top}"
         "td.msg{white-space:pre-wrap}.full{background:#e8f5e9}.part{background:#fff8e1}.zero{background:#ffebee}")


def feedback_html(assignment: str, result: dict, note: str = "") -> str:
    """The student's feedback as a standalone HTML page (same content as feedback.md and its late
    note, all escaped)."""
    e = lambda v: html.escape(str(v), quote=True)
    rows = []
    for qid, q in result["questions"].items():
        points, top, state = float(q["points"]), float(q["max_points"]), state_of(q)
        kind = {"pass": "full", "part": "part"}.get(state, "zero")
        rows.append(f'<tr class="{kind}"><td><code>{e(qid)}</code></td><td>{e(MARKS[state])}</td>'
                    f'<td>{points:g} / {top:g}</td><td>{e(help_used(q) or "-")}</td>'
                    f'<td class="msg">{e(q.get("message", ""))}</td></tr>')
    saw = (f"<p>What the grader saw (cells counted from the top, text cells included): {e(result['message'])}</p>"
           if result.get("message") else "")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(assignment)}: feedback for {e(result['student'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(assignment)}: feedback for {e(result['student'])}</h1>",
        f"<p><strong>{float(result['total']):g} / {float(result['max']):g} points</strong>, status "
        f"<code>{e(result['status'])}</code>: {e(EXPLAIN.get(result['status'], ''))}</p>",
        f"<p>Questions: {e(counts(result))}.</p>", saw,
        "<p>Points come from the grader's own run of the checks; "
        "your <code>check(...)</code> cells were not run.</p>",
        "<table><tr><th>question</th><th>result</th><th>points</th><th>help used</th><th>message</th></tr>",
        *rows, "</table>",
        f"<h2>Late submission</h2><p>{e(note)}</p>" if note else "", "</body></html>", ""])


def write_html_feedback(results: dict[str, StudentResult], assignment: str,
                        notes: dict[str, str] | None = None) -> list[Path]:
    """Entry point: `feedback.html` beside each student's feedback.md (with `notes`, e.g. late); return the paths."""
    paths = []
    for student, r in results.items():
        path = r.folder / "feedback.html"
        path.write_text(feedback_html(assignment, r.result, (notes or {}).get(student, "")), encoding="utf-8")
        paths.append(path)
    return paths
