"""What a student asked for is graded: a hand-in that used `hint`, `solution` and tried two letters of a
multiple-choice question, saved from a real Jupyter kernel, goes through the real grader; its gradebook row,
feedback (md and html) and the item analysis show the reveal and the hints, with the penalties the grade
command's flags set.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_utils.exercises import make_exercise
from course_utils.grading.usage import Policy, Usage, apply_policy, read_usage

ASSIGNMENT = "00_help"
CHECKS = '''\
from course_utils.checks import Mistake, question
from course_utils.checks.tools import expect_choice


@question("add", "00_help", hints=("Which operation gives a total?", "Look at what add(1, 2) returns."),
          reveal="return a + b")
def check_add(add):
    if add(1, 2) != 3 or add(3, -4) != -1:
        raise Mistake("add is wrong.")
    return "add is right."


@question("square", "00_help", points=2, hints=("What is x times x?", "Try square(-2)."), reveal="return x * x")
def check_square(square):
    if any(square(x) != x * x for x in (0, 3, -2)):
        raise Mistake("square is wrong.")
    return "square is right."


@question("pick", "00_help", answer_name="pick", kind="concept", hints=("Read the options.", "Two are wrong."),
          reveal="(b): the right one.")
def check_pick(pick):
    return expect_choice(pick, {"a": "wrong.", "b": "right.", "c": "wrong."}, "b", "pick")
'''
LIMITS = ["--cell-timeout", "30", "--timeout", "240", "--check-timeout", "20", "--memory", "1024", "--quiet"]


def sheet() -> nbformat.NotebookNode:
    """The solution notebook of the tiny assignment."""
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [md("# Help that is recorded"), code("smoke = False", metadata={"tags": ["parameters"]}),
                code("from course_utils.checks import check, hint, solution"),
                code("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION"),
                code("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION"),
                code('pick = "b"  # one of a, b, c')]
    return nb


def worked_in_jupyter(nb: nbformat.NotebookNode, checks: Path, asks: list[str]) -> nbformat.NotebookNode:
    """`nb` with cells that ask for `asks`, run in a Jupyter kernel that loaded `checks` (as the course's
    checks are loaded), saved with its outputs; the loading cell is not part of the hand-in."""
    nb = copy.deepcopy(nb)
    load = ("import importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('help_checks', {str(checks)!r})\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))")
    nb.cells = [nbformat.v4.new_code_cell(load), *nb.cells, *map(nbformat.v4.new_code_cell, asks)]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    nb.cells = nb.cells[1:]
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("help")
    (root / "course" / "exercises").mkdir(parents=True)
    (root / "course" / "solutions").mkdir()
    subs = root / "hand-ins"
    subs.mkdir()
    checks = root / "course" / "help_checks.py"
    checks.write_text(CHECKS)
    nbformat.write(sheet(), root / "course" / "solutions" / f"{ASSIGNMENT}.ipynb")
    nbformat.write(make_exercise(sheet()), root / "course" / "exercises" / f"{ASSIGNMENT}.ipynb")
    helped = worked_in_jupyter(sheet(), checks, ['hint("square")', 'hint("square")', 'solution("add")',
                                                 'check("pick", "a")', 'check("pick")'])
    nbformat.write(helped, subs / "helped.ipynb")
    nbformat.write(worked_in_jupyter(sheet(), checks, ['check("pick")']), subs / "alone.ipynb")
    return {"root": root, "subs": subs, "checks": checks, "helped": helped}


def grade(course: dict, name: str, *flags: str) -> dict:
    """Grade the class with `flags`; the gradebook rows, each student's result.json and feedback, and the
    item analysis."""
    root, out = course["root"], course["root"] / name / "grades.csv"
    cmd = [sys.executable, "-m", "course_utils.grade", str(course["subs"]), "--assignment", ASSIGNMENT,
           "--out", str(out), "--exercises", str(root / "course" / "exercises"),
           "--solutions", str(root / "course" / "solutions"), "--checks", str(course["checks"]),
           "--protect", str(root / "course"), *LIMITS, *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out, newline="", encoding="utf-8") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    folder = out.with_suffix("")
    results = {s: json.loads((folder / s / "result.json").read_text()) for s in rows}
    return {"rows": rows, "results": results, "md": {s: (folder / s / "feedback.md").read_text() for s in rows},
            "html": {s: (folder / s / "feedback.html").read_text() for s in rows},
            "stats": out.with_name("grades.stats.md").read_text(),
            "stats_csv": {r["question"]: r for r in csv.DictReader(open(out.with_name("grades.stats.csv")))}}


@pytest.fixture(scope="module")
def default_policy(course) -> dict:
    return grade(course, "default")


def test_the_saved_notebook_records_what_was_asked(course):
    records = [o.metadata["cnn_course"] for c in course["helped"].cells for o in c.get("outputs", [])
               if "cnn_course" in o.get("metadata", {})]
    assert {"hint": "square", "tier": 2} == {k: records[1][k] for k in ("hint", "tier")}
    assert records[2]["reveal"] == "add" and records[-1]["usage"]["tries"] == {"pick": ["a", "b"]}
    path = course["subs"] / "helped.ipynb"
    assert read_usage(path) == Usage(hints={"square": 2}, reveals={"add"}, tries={"pick": ["a", "b"]})


def test_a_record_survives_deleting_the_cell_that_asked(course, tmp_path):
    nb = copy.deepcopy(course["helped"])
    nb.cells = [c for c in nb.cells if "solution(" not in c.source and 'hint("square")' not in c.source]
    nbformat.write(nb, tmp_path / "deleted.ipynb")
    assert read_usage(tmp_path / "deleted.ipynb") == read_usage(course["subs"] / "helped.ipynb")


def test_default_policy_costs_the_revealed_question_and_the_first_wrong_letter(default_policy):
    helped, alone = default_policy["rows"]["helped"], default_policy["rows"]["alone"]
    assert (alone["add"], alone["square"], alone["pick"], alone["total"]) == ("1", "2", "1", "4")
    assert (helped["add"], helped["square"], helped["pick"], helped["total"]) == ("0", "2", "0", "2")
    assert "revealed: add" in helped["message"] and "hints: square (2)" in helped["message"]
    assert "revealed" not in alone["message"]
    q = default_policy["results"]["helped"]["questions"]
    assert q["add"]["revealed"] and q["add"]["penalty"] == 1 and q["square"]["hints"] == 2
    assert "the first answer checked, 'a', is graded" in q["pick"]["message"]


def test_feedback_and_item_analysis_show_the_reveal_and_the_hints(default_policy):
    md, html = default_policy["md"]["helped"], default_policy["html"]["helped"]
    assert "| `add` | ❌ FAIL | 0 / 1 | answer revealed |" in md and "| 2 / 2 | hints: 2 |" in md
    assert "answer revealed with solution() (-100 %)" in md
    assert "<td>answer revealed</td>" in html and "<td>hints: 2</td>" in html
    assert "| `add` | 1 | 50% (1/2) | 0.50 | 1 | 0 | 1 | 0 | 0 (0) | 1 |" in default_policy["stats"]
    assert "| `square` | 2 | 100% (2/2) | 2.00 | 2 | 0 | 0 | 0 | 1 (2) | 0 |" in default_policy["stats"]
    rows = default_policy["stats_csv"]
    assert (rows["add"]["revealed"], rows["square"]["hinted"], rows["square"]["hint_tiers"]) == ("1", "1", "2")


def test_the_instructor_sets_the_penalties_and_the_multiple_choice_policy(course):
    graded = grade(course, "lenient", "--reveal-penalty", "50", "--hint-penalty", "25", "--mc-policy", "last")
    helped = graded["rows"]["helped"]
    assert (helped["add"], helped["square"], helped["pick"], helped["total"]) == ("0.5", "1", "1", "2.5")
    assert "2 hint tier(s) (-25 % each)" in graded["results"]["helped"]["questions"]["square"]["message"]
    assert graded["rows"]["alone"]["total"] == "4"


def test_penalties_are_percentages_and_a_bad_flag_says_what_to_give():
    result = {"total": 2.0, "message": "", "questions": {
        "square": {"points": 2.0, "max_points": 2.0, "message": "right.", "state": "pass"}}}
    out = apply_policy(result, Usage(hints={"square": 3}), Policy(hint_penalty=40))
    assert out["questions"]["square"]["points"] == 0 and out["total"] == 0
    with pytest.raises(ValueError, match="from 0 to 100"):
        Policy(reveal_penalty=150)
    done = subprocess.run([sys.executable, "-m", "course_utils.grade", "x", "--assignment", "a", "--out", "o.csv",
                           "--hint-penalty", "-5"], capture_output=True, text=True)
    assert done.returncode == 2 and "from 0 to 100" in done.stderr
