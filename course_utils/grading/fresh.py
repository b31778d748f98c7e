"""The grader's verdict before hand-in: `check_all(fresh=True)` runs the saved notebook through the grader.

The saved file is copied as the hand-in `STUDENT_ID.ipynb` (the sheet's `student_id`, so the checks draw
the same cases as the grader will) and graded by `python -m course_utils.grade` with its defaults: a
fresh kernel, smoke parameters, the recording child and the replay, the same limits and sandbox. Its
feedback is printed as the instructor's gradebook will hold it, and each question whose verdict there
differs from the live `check_all` is named with the likely cause, read from the saved notebook's cells:
a deleted cell, a name defined twice, a cell that uses a name defined further down.
"""
from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from course_utils.checks import CheckResult, load_all, questions_for, student, wrap

from .tables import MARKS, state_of

SAVE_FIRST = ("save the notebook first (Ctrl+S, or File > Save): the grader reads the saved file, not this kernel")
NO_FILE = ("check_all(fresh=True) cannot tell which file this notebook is (JupyterLab tells the kernel; elsewhere "
           "it does not): pass its path, e.g. check_all(fresh='03_two_layer_cnn.ipynb'), after saving it.")


def saved_notebook(namespace: dict[str, Any], path: str | None = None) -> Path:
    """The saved notebook to grade: `path`, or the one JupyterLab (JPY_SESSION_NAME) or VS Code opened."""
    found = path or os.environ.get("JPY_SESSION_NAME") or namespace.get("__vsc_ipynb_file__")
    if not isinstance(found, str) or not found.endswith(".ipynb"):
        raise ValueError(NO_FILE)
    if not os.path.isfile(found):
        raise FileNotFoundError(f"no saved notebook at {found}: {SAVE_FIRST}.")
    return Path(found)


def grade_saved(notebook: Path, assignment: str, student_id: str, work: Path, timeout: float = 600) -> dict:
    """Grade `notebook` as the hand-in `student_id` with the grader's own command; return its result.json
    with `row`, the gradebook row. Where no sandbox can be made here, grade it unsandboxed (it is your own)."""
    subs = work / "hand-in"
    subs.mkdir(parents=True)
    shutil.copyfile(notebook, subs / f"{student_id}.ipynb")
    book = work / "gradebook.csv"
    cmd = [sys.executable, "-m", "course_utils.grade", str(subs), "--assignment", assignment, "--out", str(book),
           "--quiet", "--work", str(work)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode == 2 and "sandbox" in done.stderr:
        done = subprocess.run([*cmd, "--no-sandbox"], capture_output=True, text=True, timeout=timeout)
    results = sorted((work / "gradebook").glob("*/result.json"))
    if done.returncode != 0 or not results:
        raise RuntimeError(f"the grader could not grade {notebook.name}: {done.stderr.strip()[-1500:]}")
    with open(book, newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    return {**json.loads(results[0].read_text(encoding="utf-8")), "row": row}


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds at top level, names its top-level statements read); empty for a cell that does not parse."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return set(), set()
    bound, read = set(), set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(stmt.name)
            nodes = [*stmt.decorator_list, *getattr(stmt, "bases", [])]
        else:
            nodes = [stmt]
        for node in (n for top in nodes for n in ast.walk(top)):
            if isinstance(node, ast.Name):
                (bound if isinstance(node.ctx, ast.Store) else read).add(node.id)
            elif isinstance(node, ast.alias):
                bound.add((node.asname or node.name).split(".")[0])
    return bound, read


def why_differs(cells: list[dict], name: str) -> str:
    """The likely cause, read from the saved cells, of a different verdict for the answer called `name`."""
    code = [(i, _names("".join(c.get("source", "")))) for i, c in enumerate(cells) if c.get("cell_type") == "code"]
    defining = [i for i, (bound, _) in code if name in bound]
    if not defining:
        return (f"no cell of the saved notebook defines `{name}`: this kernel still holds it from a deleted or "
                "renamed cell (or from changes not saved).")
    if len(defining) > 1:
        where = ", ".join(str(i + 1) for i in defining)
        return (f"`{name}` is defined in cells {where}: run from the top, the last of them (cell {defining[-1] + 1}) "
                "counts; this kernel holds the one run last.")
    cell = defining[0]
    first = {}
    for i, (bound, _) in code:
        for n in bound:
            first.setdefault(n, i)
    reads = dict(code)[cell][1]
    late = sorted((first[n], n) for n in reads if first.get(n, -1) > cell)
    if late:
        return (f"cell {cell + 1}, which defines `{name}`, uses `{late[0][1]}`, which only cell {late[0][0] + 1} "
                "further down defines (cell order): run from the top it fails.")
    return ("the saved cells define it once and in order: the file is not what this kernel ran (save it and "
            "try again), or it depends on state left by cells run out of order.")


def _show(result: dict, seconds: float) -> None:
    """Print the grader's verdict as the gradebook and the feedback hold it."""
    row = result["row"]
    print(wrap(f"\nThe grader's verdict on the saved notebook (graded as {row['student']!r} in {seconds:.0f} s: "
               f"a fresh kernel, smoke parameters): {float(row['total']):g} of {float(row['max']):g} points, "
               f"status {row['status']}."))
    if result.get("message"):
        print(wrap(f"What the grader saw (cells counted from the top, text cells included): {result['message']}"))
    for qid, q in result["questions"].items():
        print(wrap(f"{MARKS[state_of(q)]} [{qid}] {q['message']}  ({float(q['points']):g}/{float(q['max_points']):g} "
                   "points)"))


def differences(live: list[CheckResult], fresh: dict, cells: list[dict]) -> list[str]:
    """One line per question whose live verdict differs from the grader's, with the likely cause."""
    questions, lines = load_all(), []
    for r in live:
        q = fresh["questions"].get(r.question)
        if r.written or q is None or (r.state, r.points) == (state_of(q), float(q["points"])):
            continue
        why = why_differs(cells, questions[r.question].answer_name)
        lines.append(f"[{r.question}] here {r.state} ({r.points:g}), in the grader {state_of(q)} "
                     f"({float(q['points']):g}): {why}")
    return lines


def fresh_check(assignment: str, live: list[CheckResult], namespace: dict[str, Any], path: str | None = None) -> dict:
    """Grade the saved notebook as the grader will, print its verdict and every question where it differs
    from `live` (this kernel's check_all); return the grader's result."""
    try:
        notebook = saved_notebook(namespace, path)
    except (ValueError, FileNotFoundError) as err:
        print(wrap(str(err)))
        return {}
    age = time.time() - notebook.stat().st_mtime
    print(wrap(f"\nGrading {notebook.name} as saved {age:.0f} s ago (if you changed it since, {SAVE_FIRST}) ..."))
    if any(q.kind == "challenge" for q in questions_for(assignment)):
        print(wrap("This sheet has a challenge: the grader trains it with smoke parameters, so this takes as long as "
                   "running the whole sheet with smoke = True, plus about half a minute to start the grader."))
    if not student():
        print(wrap("The sheet's student_id is empty: graded as 'me', whose cases differ from those the grader draws "
                   "for your hand-in's name; set student_id to that name to see them."))
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fresh-check-") as work:
        fresh = grade_saved(notebook, assignment, student() or "me", Path(work))
    _show(fresh, time.monotonic() - start)
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    lines = differences(live, fresh, cells)
    print(wrap("\n" + ("Verdicts that differ from this kernel's:\n" + "\n".join(lines) if lines else
                      "Every question gets the same verdict here and in the grader.")))
    return fresh
