"""Reading what the grader wrote: the gradebook CSV and each student's result.json.

The gradebook has the columns `student, <question ids...>, total, max, status, seconds, message`
(written questions merged by `written` sit among the question ids; a message that starts with
`student_id_mismatch:` flags a sheet whose own student_id differs from the hand-in's name, see
`feedback.gradebook_message`). Each student's feedback folder holds `result.json` (student, status,
total, max, message, questions {id: points, max_points, message, state, and sheet_id_points and
sheet_id_state where the answer earns more for the sheet's own student_id}, and student_id_mismatch,
the sheet's id, where it differs) and the executed notebook; folders are found by reading result.json,
never by rebuilding a folder name from the student id.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from course_utils.checks import MARKS, NOT_ATTEMPTED

FIRST = "student"
LAST = ("total", "max", "status", "seconds", "message")
STATES = ("pass", "part", "fail", "todo")
MARKS = {state: MARKS[state] for state in STATES}


@dataclass
class Gradebook:
    """A gradebook's columns and rows (one dict per student, values as strings, as in the CSV)."""

    columns: list[str]
    rows: list[dict[str, str]]

    @property
    def questions(self) -> list[str]:
        """The question columns, between `student` and `total`."""
        return self.columns[1:-len(LAST)]

    def by_student(self) -> dict[str, dict[str, str]]:
        """The rows keyed by student id."""
        return {r[FIRST]: r for r in self.rows}


def check_columns(columns: list[str], source: str) -> None:
    """ValueError unless `columns` are a gradebook's: student, question ids, total, max, status, seconds, message."""
    if len(columns) < 1 + len(LAST) or columns[0] != FIRST or tuple(columns[-len(LAST):]) != LAST:
        raise ValueError(f"{source} is not a gradebook: its columns are {columns}, expected "
                         f"student, <question ids>, {', '.join(LAST)} (the grader's --out CSV).")
    if len(set(columns)) != len(columns):
        raise ValueError(f"{source} repeats a column: {columns}")


def read_gradebook(path: Path) -> Gradebook:
    """The gradebook CSV at `path`; ValueError if its columns or student ids are wrong."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no gradebook {path}; pass the CSV the grader wrote with --out.")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        check_columns(columns, str(path))
        rows = [dict(r) for r in reader]
    seen: set[str] = set()
    for r in rows:
        if None in r or any(v is None for v in r.values()):
            raise ValueError(f"{path}: the row of {r.get(FIRST)!r} has a different number of cells than the header.")
        if r[FIRST] in seen:
            raise ValueError(f"{path} lists student {r[FIRST]!r} twice.")
        seen.add(r[FIRST])
    return Gradebook(columns, rows)


def write_csv(path: Path, columns: list[str], rows: list[dict] | list[list]) -> None:
    """Write a CSV atomically (a temporary file beside it, then renamed); rows are dicts or lists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        if rows and isinstance(rows[0], dict):
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
        else:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
    os.replace(tmp, path)


def write_gradebook(path: Path, book: Gradebook) -> None:
    """Write `book` to `path` (rows sorted by student, like the grader), atomically."""
    check_columns(book.columns, str(path))
    write_csv(path, book.columns, sorted(book.rows, key=lambda r: r[FIRST]))


@dataclass(frozen=True)
class StudentResult:
    """One student's graded result as the grader left it: the folder, result.json's data, the notebook."""

    folder: Path
    result: dict
    notebook: Path | None

    @property
    def student(self) -> str:
        return self.result["student"]


def load_results(feedback_dir: Path) -> dict[str, StudentResult]:
    """Every student's result under `feedback_dir` (one sub-folder per student holding result.json)."""
    feedback_dir = Path(feedback_dir)
    if not feedback_dir.is_dir():
        raise FileNotFoundError(f"no feedback folder {feedback_dir}; pass the folder the grader wrote "
                                "(by default the gradebook path without .csv).")
    found: dict[str, StudentResult] = {}
    for path in sorted(feedback_dir.glob("*/result.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            student = result["student"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a grader result ({type(err).__name__}: {err}); "
                             "regrade that student with --force.") from None
        if student in found:
            raise ValueError(f"two feedback folders hold results of {student!r}: "
                             f"{found[student].folder} and {path.parent}")
        notebooks = sorted(path.parent.glob("*.ipynb"))
        found[student] = StudentResult(path.parent, result, notebooks[0] if len(notebooks) == 1 else None)
    return found


def number(text: str, what: str) -> float:
    """`text` as a float; ValueError naming `what` if it is not a number."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is {text!r}, not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{what} is {text!r}, not a finite number")
    return value


def state_of(question: dict) -> str:
    """A graded question's state, pass, part, fail or todo: as the check said, else from its points and message."""
    state = question.get("state")
    if state in STATES:
        return state
    points, top = float(question["points"]), float(question["max_points"])
    if points >= top > 0:
        return "pass"
    if points > 0:
        return "part"
    return "todo" if str(question.get("message", "")).startswith(NOT_ATTEMPTED) else "fail"
