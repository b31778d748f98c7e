"""The grader's verdict before hand-in: `check_all(fresh=True)` runs the saved notebook through the grader.

The saved file is copied as the hand-in `STUDENT_ID.ipynb` (the sheet's `student_id`, so the checks draw
the same cases as the grader will) and graded by the grader's command, `course_utils.grade.main`: a
fresh kernel, smoke parameters, the recording child and the replay, the same limits and sandbox. What
makes it seconds instead of a minute changes no verdict: one torch thread per process (what the
instructor's `--jobs 2` gives on two cores; with more threads the small tensors of the checks spend
most of their time waiting for each other, tens of seconds on a busy machine), no item analysis
(`--no-stats`, the instructor's), and the command run in this process rather than a new interpreter
that imports torch again. Its fork server, where the worker, the student's kernel and the checker
start (a fresh interpreter: nothing of this kernel reaches them), is started by the first check and
stays warm for the next ones until this kernel restarts. Where this machine cannot make the sandbox
(no bubblewrap), the notebook is graded without it, and the verdict says so. Its feedback is printed
as the instructor's gradebook will hold it, and each question whose verdict there differs from the
live `check_all` is named with the likely cause, read from the saved notebook's cells: a deleted
cell, a name defined twice, a cell that uses a name defined further down.
"""
from __future__ import annotations

import ast
import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from course_utils.checks import CheckResult, load_all, questions_for, student, wrap

from . import isolation
from .tables import MARKS, state_of

SAVE_FIRST = ("save the notebook first (Ctrl+S, or File > Save): the grader reads the saved file, not this kernel")
# the grader's options for the fresh check (see the module docstring): no verdict depends on them
FRESH_OPTIONS = ("--threads", "1", "--no-stats")
# a sheet with a challenge checked for the first time on this machine (fork server started cold): sheet 03's
# first check took 15 s on two CPU cores at a load average of 4-6 and 44 s at 11-15 (benchmarks/fresh_check_speed.py)
CHALLENGE_FIRST_GUESS_S = 20
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


def run_grader(argv: list[str]) -> tuple[int, str]:
    """Run the grader's command `argv` in this process; return its exit code and what it wrote to stderr."""
    from course_utils import grade
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = grade.main(argv)
    except SystemExit as stop:                  # the command line was refused
        code = stop.code if isinstance(stop.code, int) else 2
    return code, err.getvalue()


def grade_saved(notebook: Path, assignment: str, student_id: str, work: Path,
                options: tuple[str, ...] = FRESH_OPTIONS) -> dict:
    """Grade `notebook` as the hand-in `student_id` with the grader's own command and `options`; return its
    result.json with `row`, the gradebook row, and `unsandboxed`: why no sandbox could be made here ('' when
    it was sandboxed; without one the notebook, your own, is graded unsandboxed)."""
    subs = work / "hand-in"
    subs.mkdir(parents=True)
    shutil.copyfile(notebook, subs / f"{student_id}.ipynb")
    book = work / "gradebook.csv"
    unsandboxed = isolation.problem()
    code, err = run_grader([str(subs), "--assignment", assignment, "--out", str(book), "--quiet", "--work",
                            str(work), *options, *(["--no-sandbox"] if unsandboxed else [])])
    results = sorted((work / "gradebook").glob("*/result.json"))
    if code != 0 or not results:
        raise RuntimeError(f"the grader could not grade {notebook.name}: {err.strip()[-1500:]}")
    with open(book, newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    return {**json.loads(results[0].read_text(encoding="utf-8")), "row": row, "unsandboxed": unsandboxed}


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
    sandbox = (f"without the grader's sandbox, which cannot start here: {result['unsandboxed']}"
               if result.get("unsandboxed") else "in the grader's sandbox")
    print(wrap(f"\nThe grader's verdict on the saved notebook (graded as {row['student']!r} in {seconds:.0f} s: "
               f"a fresh kernel, smoke parameters, {sandbox}): {float(row['total']):g} of {float(row['max']):g} "
               f"points, status {row['status']}."))
    if result.get("message"):
        print(wrap(f"What the grader saw (cells counted from the top, text cells included): {result['message']}"))
    for qid, q in result["questions"].items():
        print(wrap(f"{MARKS[state_of(q)]} [{qid}] {q['message']}  ({float(q['points']):g}/{float(q['max_points']):g} "
                   "points)"))


def _seconds_file() -> Path:
    """Where the fresh check keeps how long it took per sheet on this machine (the course's cache folder)."""
    from course_utils.model_cache import cache_dir
    return cache_dir() / "fresh-check-seconds.json"


def expected_seconds(assignment: str) -> tuple[float, str]:
    """How long the fresh check of a sheet with a challenge should take here, and where that number comes from."""
    try:
        seconds = float(json.loads(_seconds_file().read_text(encoding="utf-8"))[assignment])
        return seconds, "your last fresh check of this sheet took that long"
    except (OSError, ValueError, KeyError, TypeError):
        return CHALLENGE_FIRST_GUESS_S, "measured on two CPU cores; a slower or busier machine takes longer"


def remember_seconds(assignment: str, seconds: float) -> None:
    """Keep how long the fresh check of `assignment` took, for the next estimate (never fails)."""
    path = _seconds_file()
    try:
        known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**known, assignment: round(seconds, 1)}), encoding="utf-8")
    except (OSError, ValueError, TypeError):
        pass


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
        seconds, source = expected_seconds(assignment)
        print(wrap(f"This sheet has a challenge: the grader trains it with smoke parameters, so this takes about "
                   f"{seconds:.0f} s ({source})."))
    if not student():
        print(wrap("The sheet's student_id is empty: graded as 'me', whose cases differ from those the grader draws "
                   "for your hand-in's name; set student_id to that name to see them."))
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fresh-check-") as work:
        fresh = grade_saved(notebook, assignment, student() or "me", Path(work))
    seconds = time.monotonic() - start
    remember_seconds(assignment, seconds)
    _show(fresh, seconds)
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    lines = differences(live, fresh, cells)
    print(wrap("\n" + ("Verdicts that differ from this kernel's:\n" + "\n".join(lines) if lines else
                      "Every question gets the same verdict here and in the grader.")))
    return fresh
