"""A graded class on disk, as the grader leaves it, for the tests of the instructor tools.

The gradebook rows and result.json files follow `course_utils.grade` (points formatted with :g,
one feedback folder per student holding result.json, feedback.md and the executed notebook).
Folder names are deliberately unrelated to the student ids, which include non-ASCII names.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import nbformat

from course_utils.grading import feedback
from course_utils.grading.tables import state_of

ASSIGNMENT = "00_tiny"
MAX = {"add": 1.0, "square": 2.0}
COLUMNS = ["student", *MAX, "total", "max", "status", "seconds", "message"]


def result(student: str, points: dict[str, float], messages: dict[str, str] | None = None,
           status: str = "ok", message: str = "") -> dict:
    """A result dict like the worker's (every question present with its state, totals summed)."""
    messages = messages or {}
    questions = {q: {"points": float(points.get(q, 0)), "max_points": m,
                     "message": messages.get(q, f"{q} is right." if points.get(q, 0) >= m else "wrong")}
                 for q, m in MAX.items()}
    for q in questions.values():
        q["state"] = state_of(q)
    return {"student": student, "status": status, "message": message, "questions": questions,
            "seconds": 1.5, "cpu_seconds": 1.0, "total": sum(q["points"] for q in questions.values()),
            "max": sum(MAX.values())}


def row(r: dict) -> dict[str, str]:
    """The gradebook row of a result, as `Gradebook.add` writes it."""
    out = {"student": r["student"], "total": f"{r['total']:g}", "max": f"{r['max']:g}", "status": r["status"],
           "seconds": f"{r['seconds']:.1f}", "message": r["message"]}
    out.update({q: f"{r['questions'][q]['points']:g}" for q in MAX})
    return out


def write_gradebook(path: Path, results: list[dict]) -> None:
    """The gradebook CSV of `results`, sorted by student like the grader's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(row(r) for r in sorted(results, key=lambda r: r["student"]))


def notebook(add: str = "def add(a, b):\n    return a + b", square: str = "def square(x):\n    return x * x",
             cells: list | None = None) -> nbformat.NotebookNode:
    """A student notebook: a heading, the two answer cells, and any extra cells."""
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    return nbformat.v4.new_notebook(cells=[md("# A tiny assignment"), code(add), code(square), *(cells or [])])


def write_class(root: Path, results: list[dict], notebooks: dict[str, nbformat.NotebookNode] | None = None,
                name: str = "grades") -> tuple[Path, Path]:
    """Write the gradebook ROOT/NAME.csv and the feedback folder ROOT/NAME/; return both paths."""
    book, folder = root / f"{name}.csv", root / name
    write_gradebook(book, results)
    for r in results:
        out = folder / f"s{hashlib.sha256(r['student'].encode()).hexdigest()[:10]}"
        out.mkdir(parents=True)
        (out / "result.json").write_text(json.dumps(r, indent=1), encoding="utf-8")
        (out / "feedback.md").write_text(feedback.render(ASSIGNMENT, r), encoding="utf-8")
        if notebooks and r["student"] in notebooks:
            nbformat.write(notebooks[r["student"]], out / "executed.ipynb")
    return book, folder
