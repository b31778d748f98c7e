"""A sheet whose `student_id` is not the name it is handed in under: graded for the hand-in, and told so.

A tiny assignment with one question whose number depends on the student's cases (`lucky`, drawn with
`tools.case_random`) and one that does not (`add`); its checks live in a .py file passed with --checks.
The class is graded once (the grader's command, sandboxed): the hand-in's name chooses the cases; a sheet
whose student_id differs gets the sentence at the top of its feedback and the `student_id_mismatch` flag in
the gradebook's message, and an answer right for the sheet's own id is named as such, with no points.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.checks import set_student
from course_utils.checks.tools import case_random
from course_utils.exercises import make_exercise
from course_utils.grading import feedback

ASSIGNMENT = "00_ids"
CHECKS = '''\
from course_utils.checks import Mistake, question
from course_utils.checks.tools import case_random


@question("lucky", "00_ids")
def check_lucky(lucky):
    truth = case_random(7).randint(0, 10**6)
    if lucky != truth:
        raise Mistake(f"lucky = {lucky!r} is not the number drawn for you.")
    return "lucky is your number."


@question("add", "00_ids")
def check_add(add):
    if add(2, 3) != 5:
        raise Mistake("add(2, 3) should be 5.")
    return "add is right."
'''


def lucky_for(student_id: str) -> int:
    """The right answer to `lucky` for `student_id`."""
    set_student(student_id)
    try:
        return case_random(7).randint(0, 10**6)
    finally:
        set_student("")


def sheet(student_line: str, lucky: str) -> nbformat.NotebookNode:
    """The assignment's notebook with the given student_id line (imports cell) and `lucky` cell."""
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "cnn-course", "display_name": "Python 3 (CNN course)", "language": "python"}
    nb.cells = [md("# Ids\nA number drawn for you."), code("smoke = False", metadata={"tags": ["parameters"]}),
                code(f"from course_utils.checks import check\n\n{student_line}"),
                md("## Exercise 1: your number"), code(f"### BEGIN SOLUTION\nlucky = {lucky}\n### END SOLUTION"),
                code('check("lucky", lucky);'), md("## Exercise 2: add"),
                code("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION"),
                code('check("add", add);')]
    return nb


HAND_INS = {                    # hand-in name: (the sheet's student_id line, its `lucky`)
    "s123_smith": ('student_id = "s123"', lucky_for("s123")),           # right for the sheet's id only
    "bob": ('student_id = " bob "', lucky_for("bob")),                   # the same id (spaces do not count)
    "carol": ('student_id = ""', -1),                                      # empty, and wrong for both
    "dave": ("", lucky_for("dave")),                                      # no student_id: nothing to compare
    "eve": ('student_id = "e|`ve\\n" * 40', lucky_for("eve")),            # untrusted text, shown cleaned
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ids")
    course, subs = root / "course", root / "subs"
    for d in (course / "exercises", course / "solutions", subs):
        d.mkdir(parents=True)
    (course / "checks.py").write_text(CHECKS)
    solution = sheet('student_id = ""', "0")
    nbformat.write(solution, course / "solutions" / f"{ASSIGNMENT}.ipynb")
    nbformat.write(make_exercise(solution), course / "exercises" / f"{ASSIGNMENT}.ipynb")
    for name, (line, lucky) in HAND_INS.items():
        nbformat.write(sheet(line, str(lucky)), subs / f"{name}.ipynb")
    book = root / "grades.csv"
    done = subprocess.run([sys.executable, "-m", "course_utils.grade", str(subs), "--assignment", ASSIGNMENT,
                           "--out", str(book), "--exercises", str(course / "exercises"), "--solutions",
                           str(course / "solutions"), "--checks", str(course / "checks.py"), "--quiet",
                           "--protect", str(course), "--jobs", "2", "--no-stats", "--work", str(root)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(book, newline="", encoding="utf-8") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    results = {}
    for path in (root / "grades").glob("*/result.json"):
        result = json.loads(path.read_text(encoding="utf-8"))
        results[result["student"]] = (result, (path.parent / "feedback.md").read_text(encoding="utf-8"))
    return {"rows": rows, "results": results}


def test_the_hand_ins_name_chooses_the_cases_and_no_points_follow_from_the_sheets_id(graded):
    rows = graded["rows"]
    assert float(rows["s123_smith"]["lucky"]) == 0 and float(rows["s123_smith"]["add"]) == 1
    assert float(rows["bob"]["lucky"]) == 1 and float(rows["dave"]["lucky"]) == 1
    assert float(rows["eve"]["lucky"]) == 1 and float(rows["carol"]["lucky"]) == 0


def test_a_sheet_id_that_differs_is_said_at_the_top_of_the_feedback_and_flagged_in_the_gradebook(graded):
    result, text = graded["results"]["s123_smith"]
    assert result["student_id_mismatch"] == "s123"
    top = text.split("| question |", 1)[0]
    assert ("The sheet's student_id is 's123' but the hand-in is graded as 's123_smith', so questions whose cases "
            "depend on the id were checked with the cases drawn for 's123_smith'") in top
    assert text.index("student_id is 's123'") < text.index("points**")
    flag = graded["rows"]["s123_smith"]["message"]
    assert flag.startswith("student_id_mismatch: the sheet's student_id is 's123', graded as 's123_smith'")
    assert "right for the sheet's id: lucky" in flag and "add" not in flag


def test_a_number_right_for_the_sheets_id_but_not_for_the_hand_in_is_reported_as_such(graded):
    result, text = graded["results"]["s123_smith"]
    lucky, add = result["questions"]["lucky"], result["questions"]["add"]
    assert lucky["points"] == 0 and lucky["state"] == "fail"
    assert (lucky["sheet_id_points"], lucky["sheet_id_state"]) == (1.0, "pass")
    assert "sheet_id_points" not in add
    line = next(r for r in text.splitlines() if r.startswith("| `lucky`"))
    assert "Your answer is right for the cases of the sheet's student_id 's123' (1 / 1 points there)" in line


def test_an_empty_sheet_id_is_named_and_a_wrong_answer_is_not_called_right(graded):
    result, text = graded["results"]["carol"]
    assert result["student_id_mismatch"] == ""
    assert "The sheet's student_id is empty but the hand-in is graded as 'carol'" in text
    assert "sheet_id_points" not in result["questions"]["lucky"] and "Your answer is right" not in text
    assert graded["rows"]["carol"]["message"].startswith("student_id_mismatch: the sheet's student_id is '', ")


def test_a_matching_or_missing_sheet_id_gets_neither_the_sentence_nor_the_flag(graded):
    for name in ("bob", "dave"):
        result, text = graded["results"][name]
        assert "student_id_mismatch" not in result
        assert "student_id" not in text and "student_id" not in graded["rows"][name]["message"]


def test_a_hostile_sheet_id_is_shown_as_cleaned_text(graded):
    result, text = graded["results"]["eve"]
    assert result["student_id_mismatch"].startswith("e|`ve\ne|`ve") and len(result["student_id_mismatch"]) <= 200
    shown = feedback.shown_id(result["student_id_mismatch"])
    assert shown == repr("e??ve?" * 10 + "…") and shown in text and shown in graded["rows"]["eve"]["message"]
    assert "`ve" not in text.split("| question |", 1)[0]


def test_feedback_and_gradebook_message_without_a_mismatch_are_unchanged():
    result = {"student": "x", "status": "ok", "message": "cell 3 raised ValueError", "total": 1.0, "max": 1.0,
              "questions": {"q": {"points": 1.0, "max_points": 1.0, "message": "ok", "state": "pass"}}}
    assert feedback.gradebook_message(result) == "cell 3 raised ValueError"
    assert feedback.student_id_note(result) == "" and "student_id" not in feedback.render("a", result)
