"""The papermill grader on a hostile class: every way a hand-in can go wrong gets its own row.

A tiny assignment (two functions, `add` and `square`, 1 + 2 points; a `square` that returns floats
earns 1 of its 2 points) keeps the notebooks light; its checks live in a .py file passed with
--checks, like private exam checks. The corpus is
graded once per session (--jobs 2) and each test reads its student's row.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.exercises import make_exercise
from course_utils.grading.worker import is_check_cell

ASSIGNMENT = "00_tiny"
CHECKS = '''\
import functools
import os
from pathlib import Path

from course_utils.checks import Mistake, question


EVIDENCE = Path(__file__).parent.parent / "evidence"


@functools.cache
def add_cases():
    """The cases, loaded like a check's data; each load leaves its process and parent ids in evidence/, if any."""
    if EVIDENCE.is_dir():
        with open(EVIDENCE / "prepare.pids", "a") as f:
            f.write(f"{os.getpid()} {os.getppid()}\\n")
    return [(1, 2), (3, -4)]


@question("add", "00_tiny", prepare=add_cases)
def check_add(add):
    for a, b in add_cases():
        if add(a, b) != a + b:
            raise Mistake(f"add({a}, {b}) returned {add(a, b)!r}, expected {a + b}.")
    return "add is right on 2 cases."


@question("square", "00_tiny", points=2, hints=("Multiply x by itself.",))
def check_square(square):
    for x in [0, 3, -2]:
        if square(x) != x * x:
            raise Mistake(f"square({x}) returned {square(x)!r}, expected {x * x}.")
    if any(type(square(x)) is not int for x in [0, 3, -2]):
        raise Mistake("square returns floats for ints.", "keep the int: no float(...) around it.",
                      earned=1, credit="the right values")
    return "square is right on 3 cases."
'''
ADD, SQUARE = 4, 7          # indices of the two exercise cells in the solution notebook
BACKGROUND = f"left-running-{os.getpid()}"    # in the command line of the processes a hand-in leaves behind
LIMITS = ["--cell-timeout", "10", "--timeout", "120", "--check-timeout", "5", "--memory", "1024"]


def solution() -> nbformat.NotebookNode:
    """The tiny assignment's solution notebook."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "cnn-course", "display_name": "Python 3 (CNN course)", "language": "python"}
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb.cells = [
        md("# A tiny assignment\nTwo small functions."),
        code("smoke = False", metadata={"tags": ["parameters"]}),
        code("from course_utils.checks import check"),
        md("## Exercise 1: add two numbers"),
        code('def add(a, b):\n    """a + b."""\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION'),
        code('check("add", add);'),
        md("## Exercise 2: square a number"),
        code('def square(x):\n    """x squared."""\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION'),
        code('check("square", square);'),
    ]
    return nb


def with_cells(nb: nbformat.NotebookNode, edits: dict[int, str], insert: dict[int, str] | None = None,
               delete: tuple[int, ...] = ()) -> nbformat.NotebookNode:
    """A copy of `nb` with some cells' sources replaced, new code cells inserted before indices, some deleted."""
    nb = copy.deepcopy(nb)
    for i, src in edits.items():
        nb.cells[i].source = src
    cells = []
    for i, cell in enumerate(nb.cells):
        if insert and i in insert:
            cells.append(nbformat.v4.new_code_cell(insert[i]))
        if i not in delete:
            cells.append(cell)
    nb.cells = cells
    return nb


def build_corpus(root: Path) -> dict:
    """Write the course (exercises, solutions, checks) and the hostile submissions under `root`."""
    course, subs = root / "course", root / "submissions"
    for d in (course / "exercises", course / "solutions", subs, root / "evidence"):
        d.mkdir(parents=True)
    sol, checks = solution(), course / "tiny_checks.py"
    checks.write_text(CHECKS)
    nbformat.write(sol, course / "solutions" / f"{ASSIGNMENT}.ipynb")
    exercise = make_exercise(sol)
    nbformat.write(exercise, course / "exercises" / f"{ASSIGNMENT}.ipynb")
    gradebook, evidence = root / "out" / "grades.csv", root / "evidence"
    wrong_square = 'def square(x):\n    return 2 * x'
    notebooks = {
        "correct": sol,
        "stub": exercise,
        "partial": with_cells(sol, {SQUARE: wrong_square}),
        "partial_credit": with_cells(sol, {SQUARE: "def square(x):\n    return float(x * x)"}),
        "check_cells": with_cells(sol, {5: 'check("add")', 8: "check_all()  # every question\ncheck('square');"},
                                  insert={SQUARE: 'hint("square")\nhint("add");'}),
        "syntax_error": with_cells(sol, {ADD: "def add(a, b)\n    return a + b"}),
        "exception": with_cells(sol, {ADD: "def add(a, b):\n    raise ValueError('not today')"},
                                insert={SQUARE: "1 / 0"}),
        "infinite_loop": with_cells(sol, {}, insert={SQUARE: (
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")}),
        "loop_in_function": with_cells(sol, {SQUARE: "def square(x):\n    while True:\n        pass"}),
        "sys_exit": with_cells(sol, {8: "import sys\nsys.exit()"}),
        "os_exit": with_cells(sol, {}, insert={SQUARE: "import os\nos._exit(1)"}),
        "segfault": with_cells(sol, {}, insert={SQUARE: "import ctypes\nctypes.string_at(0)"}),
        "memory_bomb": with_cells(sol, {}, insert={SQUARE: (
            "hog = []\nwhile True:\n    hog.append(bytearray(50 * 2**20))")}),
        "big_output": with_cells(sol, {}, insert={SQUARE: 'print("x" * 100_000_000)'}),
        "background": with_cells(sol, {}, insert={SQUARE: (
            "import subprocess, sys, os\n"
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {BACKGROUND!r}], "
            "start_new_session=True)\n"
            f"os.system('sh -c \"sleep 600; echo {BACKGROUND}\" &')")}),
        "lists_modules": with_cells(sol, {}, insert={SQUARE: (
            "import json, sys\nprint('MODULES', json.dumps(sorted(sys.modules)))")}),
        "deleted_cells": with_cells(sol, {}, delete=(5, 6, 7, 8)),
        "reordered_split_renamed": with_cells(sol, {
            ADD: "def _plus(a, b):\n    return a + b",
            SQUARE: "def add(a, b):\n    return _plus(a, b)\n\ndef squared(x):\n    return x * x",
            5: 'print("moved")', 8: 'print("no check here")'}),
        "redefines_check": with_cells(sol, {
            ADD: "def add(a, b):\n    return 0",
            SQUARE: ("def square(x):\n    return 0\n"
                     "import course_utils.checks as c\n"
                     "def check(qid, answer):\n    print('passed')\n"
                     "c.grade = lambda qid, answer: c.CheckResult(qid, True, 99, 1, 'ok')\n"
                     "import sys\nsys.modules['course_utils.checks'] = c")}),
        "writes_gradebook": with_cells(sol, {}, insert={SQUARE: (
            f"open({str(gradebook)!r}, 'a').write('intruder,9,9,18,3,ok,0,\\n')\n"
            f"open({str(course / 'solutions' / 'notes.txt')!r}, 'w').write('x')")}),
        "reads_solutions": with_cells(exercise, {}, insert={SQUARE: (
            "import json\n"
            f"for cell in json.load(open({str(course / 'solutions' / (ASSIGNMENT + '.ipynb'))!r}))['cells']:\n"
            "    if cell['cell_type'] == 'code' and 'def ' in ''.join(cell['source']):\n"
            "        exec(''.join(cell['source']))")}),
        "changes_checks": with_cells(sol, {}, insert={SQUARE: (
            f"import os\nos.system('echo \"# changed\" >> {checks}')")}),
        "wrong_assignment": with_cells(nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell("# Another assignment"),
            nbformat.v4.new_code_cell("def conv_output_size(n, k):\n    return n - k + 1")]), {}),
    }
    for name, nb in notebooks.items():
        nbformat.write(nb, subs / f"{name}.ipynb")
    nbformat.write(nbformat.convert(sol, 3), subs / "old_format.ipynb")
    (subs / "invalid_json.ipynb").write_text('{"cells": [')
    (subs / "empty.ipynb").write_text("")
    (subs / "binary.ipynb").write_bytes(bytes(range(256)) * 10)
    (subs / "essay.txt").write_text("I did not do the notebook.")
    (subs / "in_a_folder").mkdir()
    nbformat.write(sol, subs / "in_a_folder" / f"{ASSIGNMENT}.ipynb")
    return {"course": course, "subs": subs, "gradebook": gradebook, "checks": checks, "evidence": evidence}


def grade_cmd(paths: dict, subs: Path, gradebook: Path, *extra: str) -> list[str]:
    """The grading command line for this corpus."""
    course = paths["course"]
    return [sys.executable, "-m", "course_utils.grade", str(subs), "--assignment", ASSIGNMENT,
            "--out", str(gradebook), "--exercises", str(course / "exercises"),
            "--solutions", str(course / "solutions"), "--checks", str(paths["checks"]), "--quiet",
            "--protect", str(course),
            *LIMITS, *extra]


def run_grader(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def read_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def tree_digest(folder: Path) -> str:
    """One hash of every file (path and bytes) under `folder`."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def graded(tmp_path_factory) -> dict:
    """Grade the hostile corpus once with two workers; return paths, rows and timing."""
    root = tmp_path_factory.mktemp("grading")
    paths = build_corpus(root)
    before = {"subs": tree_digest(paths["subs"]), "checks": paths["checks"].read_text(),
              "solutions": tree_digest(paths["course"] / "solutions")}
    start = time.monotonic()
    done = run_grader(grade_cmd(paths, paths["subs"], paths["gradebook"], "--jobs", "2"), timeout=900)
    return {**paths, "rows": read_rows(paths["gradebook"]), "seconds": time.monotonic() - start,
            "before": before, "stderr": done.stderr}


def row(graded: dict, student: str) -> dict:
    rows = graded["rows"]
    assert student in rows, f"{student} missing from the gradebook: {sorted(rows)}"
    return rows[student]


def points(r: dict) -> tuple[float, float, float]:
    return float(r["add"]), float(r["square"]), float(r["total"])


def test_every_submission_has_a_row_and_the_run_is_bounded(graded):
    students = {p.stem if p.suffix == ".ipynb" else p.name for p in graded["subs"].iterdir()}
    assert set(graded["rows"]) == students
    assert all(r["max"] == "3" for r in graded["rows"].values())
    assert graded["seconds"] < 600


def test_correct_stub_and_partial(graded):
    assert points(row(graded, "correct")) == (1, 2, 3) and row(graded, "correct")["status"] == "ok"
    assert points(row(graded, "in_a_folder")) == (1, 2, 3)
    stub = row(graded, "stub")
    assert points(stub) == (0, 0, 0) and stub["status"] == "ok"
    feedback = (graded["gradebook"].with_suffix("") / "stub" / "feedback.md").read_text()
    assert "not attempted" in feedback and "`square`" in feedback
    partial = row(graded, "partial")
    assert points(partial) == (1, 0, 1)
    feedback = (graded["gradebook"].with_suffix("") / "partial" / "feedback.md").read_text()
    assert "square(3) returned 6, expected 9" in feedback


def test_the_kernel_never_holds_the_instructors_checks(graded):
    assert points(row(graded, "lists_modules")) == (1, 2, 3)
    executed = nbformat.read(graded["gradebook"].with_suffix("") / "lists_modules" / "lists_modules.ipynb",
                             as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    modules = json.loads(printed.split("MODULES ", 1)[1])
    assert "json" in modules and not [m for m in modules if "tiny_checks" in m]


def test_a_checks_data_is_loaded_once_per_grading_process(graded):
    loads = [line.split() for line in (graded["evidence"] / "prepare.pids").read_text().splitlines()]
    loaded = {pid for pid, _ in loads}
    assert loads and len(loaded) == len(loads)
    assert not any(parent in loaded for _, parent in loads)     # the child recording an answer inherits them


def test_partial_credit_flows_into_the_gradebook_feedback_and_result(graded):
    r = row(graded, "partial_credit")
    assert points(r) == (1, 1, 2) and r["status"] == "ok"
    folder = graded["gradebook"].with_suffix("") / "partial_credit"
    assert json.loads((folder / "result.json").read_text())["questions"]["square"]["state"] == "part"
    md = (folder / "feedback.md").read_text()
    assert "| `square` | 🟡 PART | 1 / 2 | - | square returns floats for ints." in md
    assert "Partial credit: 1 of 2 points for the right values." in md
    assert '<tr class="part"><td><code>square</code></td><td>🟡 PART</td>' in (folder / "feedback.html").read_text()
    stats = (graded["gradebook"].with_name("grades.stats.md")).read_text()
    assert "square returns floats for ints." in stats


@pytest.mark.parametrize("source", ['check("q1")', "check_all()", "hint('q1');", 'check("q1", answer)  # run me',
                                    'check("#1", answer)  # a hash in a string',
                                    'check_all()\n# the table\nhint("q1")'])
def test_check_check_all_and_hint_cells_are_feedback(source):
    assert is_check_cell(source)


@pytest.mark.parametrize("source", ["", "# nothing", "answer = check('q1')", "check('q1')\nx = 1", "rechecker()",
                                    "check('q1')  # and then\nimport os", "check('q1'", "check('#')\nadd = 0"])
def test_cells_that_do_more_are_not_check_cells(source):
    assert not is_check_cell(source)


def test_check_check_all_and_hint_cells_in_a_hand_in_cost_nothing(graded):
    r = row(graded, "check_cells")
    assert points(r) == (1, 2, 3) and r["status"] == "ok", r["message"]
    executed = nbformat.read(graded["gradebook"].with_suffix("") / "check_cells" / "check_cells.ipynb", as_version=4)
    raw = [c.source for c in executed.cells if c.cell_type == "raw"]
    assert {'check("add")', 'hint("square")\nhint("add");', "check_all()  # every question\ncheck('square');"} \
        <= set(raw)


@pytest.mark.parametrize("student, why", [
    ("invalid_json", "not valid notebook JSON"), ("empty", "empty"), ("binary", "not valid notebook JSON"),
    ("essay.txt", "not a notebook"), ("wrong_assignment", "not assignment 00_tiny")])
def test_files_that_are_not_this_notebook_are_invalid(graded, student, why):
    r = row(graded, student)
    assert r["status"] == "invalid" and why in r["message"] and r["total"] == "0"


def test_old_notebook_format_is_upgraded_and_graded(graded):
    assert points(row(graded, "old_format")) == (1, 2, 3)


def test_an_error_costs_only_its_own_question(graded):
    syntax = row(graded, "syntax_error")
    assert points(syntax) == (0, 2, 2) and syntax["status"] == "error" and "SyntaxError" in syntax["message"]
    exc = row(graded, "exception")
    assert points(exc) == (0, 2, 2) and "ZeroDivisionError" in exc["message"]


@pytest.mark.parametrize("student, status, why", [
    ("infinite_loop", "timeout", "ran past the 10 s limit"),
    ("os_exit", "killed", "ended the kernel"), ("segfault", "killed", "ended the kernel")])
def test_a_cell_that_hangs_or_kills_the_kernel_is_skipped(graded, student, status, why):
    r = row(graded, student)
    assert r["status"] == status and why in r["message"] and "skipped" in r["message"]
    assert points(r) == (1, 2, 3)


def test_endless_loop_inside_an_answer_costs_that_question(graded):
    r = row(graded, "loop_in_function")
    assert r["status"] == "timeout" and points(r) == (1, 0, 1) and "check of square ran past 5 s" in r["message"]


def test_the_students_check_cells_are_not_what_counts(graded):
    executed = nbformat.read(graded["gradebook"].with_suffix("") / "correct" / "correct.ipynb", as_version=4)
    checks = [c for c in executed.cells if c.source.startswith("check(")]
    assert len(checks) == 2 and all(c.cell_type == "raw" for c in checks)


def test_sys_exit_does_not_stop_grading(graded):
    r = row(graded, "sys_exit")
    assert points(r) == (1, 2, 3) and "SystemExit" in r["message"]


def test_memory_bomb_is_stopped(graded):
    r = row(graded, "memory_bomb")
    assert r["status"] in {"error", "killed"} and points(r) == (1, 2, 3)
    assert "MemoryError" in r["message"] or "ended the kernel" in r["message"]


def test_huge_output_is_truncated(graded):
    assert points(row(graded, "big_output")) == (1, 2, 3)
    executed = graded["gradebook"].with_suffix("") / "big_output" / "big_output.ipynb"
    assert executed.stat().st_size < 5 * 2**20 and "output truncated" in executed.read_text()


def test_background_processes_are_ended(graded):
    assert points(row(graded, "background")) == (1, 2, 3)
    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and BACKGROUND.encode() in (entry / "cmdline").read_bytes():
                left.append((entry / "cmdline").read_bytes())
        except OSError:
            continue
    assert left == []


def test_deleted_reordered_split_and_renamed_cells(graded):
    deleted = row(graded, "deleted_cells")
    assert points(deleted) == (1, 0, 1)
    moved = row(graded, "reordered_split_renamed")
    assert points(moved) == (1, 0, 1)
    feedback = (graded["gradebook"].with_suffix("") / "reordered_split_renamed" / "feedback.md").read_text()
    assert "did you rename it to `squared`" in feedback


def test_redefining_check_or_the_checks_module_gains_nothing(graded):
    assert points(row(graded, "redefines_check")) == (0, 0, 0)


def test_writing_grader_files_is_caught_and_undone(graded):
    r = row(graded, "writes_gradebook")
    assert r["status"] == "invalid" and r["total"] == "0" and "grades.csv" in r["message"]
    assert "intruder" not in graded["rows"]
    assert not (graded["course"] / "solutions" / "notes.txt").exists()
    c = row(graded, "changes_checks")            # through a shell: the sandbox has no such file to change
    assert c["status"] == "invalid" and "run a command on" in c["message"] and "tiny_checks.py" in c["message"]
    assert graded["checks"].read_text() == graded["before"]["checks"]


def test_reading_the_solutions_is_caught(graded):
    r = row(graded, "reads_solutions")
    assert r["status"] == "invalid" and r["total"] == "0" and "solutions" in r["message"]


def test_submissions_are_never_modified(graded):
    assert tree_digest(graded["subs"]) == graded["before"]["subs"]
    assert tree_digest(graded["course"] / "solutions") == graded["before"]["solutions"]


def test_rerun_skips_graded_students_and_regrading_gives_the_same_result(graded, tmp_path):
    done = run_grader(grade_cmd(graded, graded["subs"], graded["gradebook"]), timeout=120)
    assert "grading 0 with" in done.stderr
    assert read_rows(graded["gradebook"]) == graded["rows"]
    few = tmp_path / "few"
    few.mkdir()
    for name in ("correct", "partial", "exception"):
        (few / f"{name}.ipynb").write_bytes((graded["subs"] / f"{name}.ipynb").read_bytes())
    again = tmp_path / "again.csv"
    run_grader(grade_cmd(graded, few, again, "--jobs", "2", "--force"), timeout=300)
    for name, r in read_rows(again).items():
        old = graded["rows"][name]
        assert {k: v for k, v in r.items() if k != "seconds"} == {k: v for k, v in old.items() if k != "seconds"}


def test_gradebook_of_another_assignment_is_refused(graded, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("student,q1,total,max,status,seconds,message\n")
    done = subprocess.run(grade_cmd(graded, graded["subs"], other), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "columns" in done.stderr
