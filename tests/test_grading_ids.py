"""Student ids as given (accents, spaces), safe feedback folders, same-id hand-ins, output paths.

The end-to-end run grades a tiny assignment (from test_grade) with hand-ins named
`José García.ipynb`, `bob.ipynb` and `bob/`, and two hand-ins that attack the grader through
the notebook itself, beside a right one.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.grade import main
from course_utils.grading.submissions import discover, folder_name, student_of_folder
from test_grade import ADD, ASSIGNMENT, SQUARE, build_corpus, grade_cmd, solution, with_cells


@pytest.mark.parametrize("student", ["José García", "bob", "_changed", ".hidden", "a~b", "100% done", "李雷",
                                     "O'Brien-Smith", "bob.ipynb", "x" * 60])
def test_folder_names_are_safe_and_reversible(student):
    name = folder_name(student)
    assert student_of_folder(name) == student
    assert name.isascii() and "/" not in name and " " not in name and name[0] not in "._"
    assert folder_name("José García") != folder_name("Jose Garcia")


def test_ids_are_kept_as_given_and_same_id_hand_ins_are_all_found(tmp_path):
    subs = tmp_path / "hand-ins"
    (subs / "bob").mkdir(parents=True)
    nbformat.write(solution(), subs / "bob" / f"{ASSIGNMENT}.ipynb")
    for name in ("José García.ipynb", "bob.ipynb"):
        nbformat.write(solution(), subs / name)
    (subs / "essay.txt").write_text("no notebook")
    found = {s.hand_in: s for s in discover(subs, ASSIGNMENT)}
    assert set(found) == {"José García.ipynb", "bob/", "bob.ipynb", "essay.txt"}
    assert {h: s.student for h, s in found.items()} == {"José García.ipynb": "José García", "bob/": "bob",
                                                          "bob.ipynb": "bob.ipynb", "essay.txt": "essay.txt"}
    assert found["bob/"].same_id == ("bob.ipynb",) and found["bob.ipynb"].same_id == ("bob/",)
    assert found["José García.ipynb"].same_id == ()
    folders = [s.folder for s in found.values()]
    assert len(set(folders)) == len(folders)
    assert all(student_of_folder(s.folder) == s.student for s in found.values())


@pytest.mark.parametrize("extra, what, suggestion", [
    (["--out", "hand-ins.csv"], "feedback folder", "--feedback"),
    (["--out", "hand-ins/grades.csv"], "gradebook", "--out"),
    (["--out", "grades.csv", "--feedback", "hand-ins/feedback"], "feedback folder", "--feedback"),
    (["--out", "grades.csv", "--feedback", "."], "feedback folder", "--feedback"),
    (["--out", "grades.csv", "--work", "hand-ins/tmp"], "working folder", "--work"),
])
def test_outputs_among_the_hand_ins_are_refused_before_anything_runs(tmp_path, monkeypatch, capsys,
                                                                     extra, what, suggestion):
    monkeypatch.chdir(tmp_path)
    subs = tmp_path / "hand-ins"
    subs.mkdir()
    nbformat.write(solution(), subs / "ana.ipynb")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["hand-ins", "--assignment", ASSIGNMENT, *extra]) == 2
    error = capsys.readouterr().err
    assert what in error and str(subs) in error and suggestion in error
    assert sorted(p.name for p in tmp_path.rglob("*")) == before          # nothing written anywhere
    fix = error.split("e.g. ")[-1].split()
    assert main(["hand-ins", "--assignment", ASSIGNMENT, "--exercises", str(tmp_path / "none"),
                 *extra, *fix]) == 2
    assert "no exercise notebook" in capsys.readouterr().err             # the suggested path passes the check


ATTACKS = {
    "liar": (ADD, "class Liar:\n    def __eq__(self, other):\n        return True\n"
                  "    def __ne__(self, other):\n        return False\n"
                  "def add(a, b):\n    return Liar()"),
    "patches_checks": (SQUARE, "def square(x):\n    import course_utils.checks as c\n    real = c.CheckResult\n"
                               "    c.CheckResult = lambda q, p, pts, mx, msg, att=True: real(q, True, mx, mx, 'ok')\n"
                               "    return 0"),
}


@pytest.fixture(scope="module")
def graded_names(tmp_path_factory) -> dict:
    """Grade accented, spaced and same-id hand-ins and two attacks, beside a right one."""
    root = tmp_path_factory.mktemp("ids")
    paths = build_corpus(root)
    subs = root / "names"
    (subs / "bob").mkdir(parents=True)
    sol = solution()
    nbformat.write(sol, subs / "José García.ipynb")
    nbformat.write(sol, subs / "bob.ipynb")
    nbformat.write(with_cells(sol, {SQUARE: "def square(x):\n    return 2 * x"}), subs / "bob" / f"{ASSIGNMENT}.ipynb")
    for name, (cell, source) in ATTACKS.items():
        nbformat.write(with_cells(sol, {cell: source}), subs / f"{name}.ipynb")
    gradebook = root / "out" / "grades.csv"
    done = subprocess.run(grade_cmd(paths, subs, gradebook, "--jobs", "2"), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(gradebook, newline="", encoding="utf-8") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return {"rows": rows, "feedback": gradebook.with_suffix(""), "stderr": done.stderr}


def test_accented_ids_appear_as_given(graded_names):
    r = graded_names["rows"]["José García"]
    assert r["student"] == "José García" and r["total"] == "3"
    folder = graded_names["feedback"] / folder_name("José García")
    assert "feedback for José García" in (folder / "feedback.md").read_text(encoding="utf-8")
    assert json.loads((folder / "result.json").read_text(encoding="utf-8"))["student"] == "José García"


def test_same_id_hand_ins_are_both_graded_and_named(graded_names):
    rows = graded_names["rows"]
    assert (rows["bob"]["total"], rows["bob.ipynb"]["total"]) == ("1", "3")     # the folder, the file
    for student in ("bob", "bob.ipynb"):
        assert "bob.ipynb, bob/ claim the same student id" in rows[student]["message"]
    assert "bob.ipynb, bob/ claim the same student id" in graded_names["stderr"]
    assert {p.name for p in graded_names["feedback"].iterdir()} >= {"bob", "bob.ipynb"}


def test_attacks_in_a_notebook_score_nothing_and_the_rest_keeps_its_points(graded_names):
    liar, patcher = graded_names["rows"]["liar"], graded_names["rows"]["patches_checks"]
    assert (liar["add"], liar["square"]) == ("0", "2")
    assert (patcher["add"], patcher["square"]) == ("1", "0")
