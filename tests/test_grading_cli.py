"""The grader command with the instructor's options, end to end on a small class of the tiny assignment.

One run writes the gradebook, the item analysis, the written-answer sheets and Gradescope's
results.json; the same class graded as three shards, one after another, and merged must give the
same scores and statuses. The filled written scores then merge into the gradebook and survive a regrade.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.exercises import make_exercise
from course_utils.grading import written
from course_utils.grading.shards import shard_of
from test_grade import ADD, ASSIGNMENT, CHECKS, LIMITS, SQUARE, read_rows, run_grader, solution, with_cells

ANSWER = "The maximum ignores where in its window a feature lies."
MODEL_ANSWER = "A shift smaller than the window often keeps the same maximum."


def with_written(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """`nb` with a written question at the end, laid out like the course's sheets: the question, the
    tagged answer cell (a model answer in the solution), its `check("why_pool")` cell, then
    `hint(...)` and `check_all()` cells."""
    code = nbformat.v4.new_code_cell
    nb.cells[2].source = "from course_utils.checks import check, check_all, hint"
    nb.cells += [nbformat.v4.new_markdown_cell("Why does max pooling help with small shifts?"),
                 nbformat.v4.new_markdown_cell(MODEL_ANSWER, metadata={
                     "tags": [written.TAG], written.QUESTION_KEY: "why_pool", written.POINTS_KEY: 2}),
                 code('check("why_pool")'), code('hint("square")'), code("check_all()")]
    return nb


def answered(nb: nbformat.NotebookNode, text: str | None) -> nbformat.NotebookNode:
    """`nb` with its written answer replaced by `text`, or deleted for None."""
    cell = next(c for c in nb.cells if c.metadata.get(written.QUESTION_KEY) == "why_pool")
    if text is None:
        nb.cells.remove(cell)
    else:
        cell.source = text
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    """The tiny course with a written question and three hand-ins: right, partly right, broken."""
    root = tmp_path_factory.mktemp("cli")
    course, subs = root / "course", root / "submissions"
    for d in (course / "exercises", course / "solutions", subs):
        d.mkdir(parents=True)
    sol = with_written(solution())
    (course / "checks.py").write_text(CHECKS)
    nbformat.write(sol, course / "solutions" / f"{ASSIGNMENT}.ipynb")
    exercise = make_exercise(sol)
    assert written.PLACEHOLDER in [c.source for c in exercise.cells], "the generator writes the placeholder"
    nbformat.write(exercise, course / "exercises" / f"{ASSIGNMENT}.ipynb")
    hand_ins = {"correct": answered(with_cells(exercise, {ADD: sol.cells[ADD].source, SQUARE: sol.cells[SQUARE].source}),
                                    ANSWER),
                "partial": answered(with_cells(sol, {SQUARE: "def square(x):\n    return float(x * x)"}),
                                    written.PLACEHOLDER),
                "broken": answered(with_cells(sol, {ADD: "def add(a, b)\n    return a + b"}), None)}
    assert {shard_of(s, 3) for s in hand_ins} == {1, 2, 3}, "each shard should grade one student"
    for name, nb in hand_ins.items():
        nbformat.write(nb, subs / f"{name}.ipynb")
    roster = root / "roster.csv"
    roster.write_text("student_id,Student,ID,SIS User ID\n" +
                      "".join(f"{s},{s.title()},{i},S-{i}\n" for i, s in enumerate(sorted(hand_ins))))
    return {"root": root, "course": course, "subs": subs, "students": set(hand_ins), "roster": roster}


def grade(course: dict, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the grader command on the class into the gradebook `out`."""
    c = course["course"]
    return run_grader([sys.executable, "-m", "course_utils.grade", str(course["subs"]), "--assignment", ASSIGNMENT,
                       "--out", str(out), "--exercises", str(c / "exercises"), "--solutions", str(c / "solutions"),
                       "--checks", str(c / "checks.py"), "--protect", str(c), "--quiet", "--jobs", "2",
                       *LIMITS, *extra], timeout=300)


@pytest.fixture(scope="module")
def one_run(course) -> dict:
    """The class graded in one run with the Gradescope and Canvas exports."""
    book = course["root"] / "one" / "grades.csv"
    grade(course, book, "--format", "gradescope", "--format", "canvas", "--roster", str(course["roster"]))
    return {"book": book, "rows": read_rows(book)}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_one_run_grades_right_partly_right_and_broken(one_run, course):
    rows = one_run["rows"]
    assert set(rows) == course["students"]
    assert [rows[s]["total"] for s in ("correct", "partial", "broken")] == ["3", "2", "2"]
    assert [rows["partial"]["add"], rows["partial"]["square"]] == ["1", "1"]
    assert [rows["broken"]["add"], rows["broken"]["square"]] == ["0", "2"]
    assert rows["correct"]["status"] == rows["partial"]["status"] == "ok"      # check, hint, check_all cost nothing
    with open(course["root"] / "one" / "grades.canvas.csv", newline="", encoding="utf-8") as f:
        canvas = {r["Student"]: r[ASSIGNMENT] for r in csv.DictReader(f)}
    assert canvas == {"    Points Possible": "3", "Broken": "2", "Correct": "3", "Partial": "2"}


def test_stats_count_the_class_and_draw_the_figure(one_run):
    prefix = one_run["book"].with_suffix("")
    stats = {r["question"]: r for r in read_csv(prefix.with_name("grades.stats.csv"))}
    assert set(stats) == {"add", "square"}
    assert [stats["add"][k] for k in ("students", "passed", "partly_right", "failed")] == ["3", "2", "0", "1"]
    assert [stats["square"][k] for k in ("students", "passed", "partly_right", "failed")] == ["3", "2", "1", "0"]
    mistakes = read_csv(prefix.with_name("grades.mistakes.csv"))
    assert any(m["question"] == "square" and m["students"] == "1" and "square returns floats for ints" in m["mistake"]
               for m in mistakes)
    assert "square" in prefix.with_name("grades.stats.md").read_text()
    assert prefix.with_name("grades.stats.png").read_bytes().startswith(b"\x89PNG")


def test_gradescope_results_per_student(one_run, course):
    folders = sorted(one_run["book"].with_suffix("").glob("*/results.json"))
    assert len(folders) == len(course["students"])
    for path in folders:
        student = json.loads((path.parent / "result.json").read_text())["student"]
        data = json.loads(path.read_text())
        assert [t["name"] for t in data["tests"]] and len(data["tests"]) == 2
        assert sum(t["score"] for t in data["tests"]) == float(one_run["rows"][student]["total"])
        assert sum(t["max_score"] for t in data["tests"]) == 3
        assert "<table>" in (path.parent / "feedback.html").read_text()
        if student == "partial":
            assert data["tests"][1]["output"].startswith("🟡 PART") and data["tests"][1]["score"] == 1
            assert "1 of 2 points for the right values" in data["tests"][1]["output"]


def test_written_answers_are_exported_and_their_scores_merged_and_kept(one_run, course):
    sheets = one_run["book"].with_name("grades.written")
    assert ANSWER in (sheets / "why_pool.md").read_text()
    scores = read_csv(sheets / "scores.csv")
    assert {r["student"]: r["state"] for r in scores} == {"correct": "answered", "partial": "empty",
                                                         "broken": "deleted"}
    filled = course["root"] / "filled.csv"
    with open(filled, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, written.SCORE_COLUMNS)
        writer.writeheader()
        writer.writerows({**r, "score": "2" if r["student"] == "correct" else "0"} for r in scores)
    grade(course, one_run["book"], "--written-scores", str(filled))
    merged = read_rows(one_run["book"])
    assert merged["correct"]["why_pool"] == "2" and merged["correct"]["total"] == "5"
    grade(course, one_run["book"], "--force")            # a regrade keeps the merged written scores
    again = read_rows(one_run["book"])
    assert {s: (r["why_pool"], r["total"]) for s, r in again.items()} == \
        {s: (r["why_pool"], r["total"]) for s, r in merged.items()}


def states(feedback: Path) -> set[tuple[str, str, str]]:
    """(student, question, state) for every question of every result.json under `feedback`."""
    results = [json.loads(p.read_text(encoding="utf-8")) for p in feedback.glob("*/result.json")]
    return {(r["student"], q, v["state"]) for r in results for q, v in r["questions"].items()}


def test_three_shards_merged_equal_one_run(one_run, course):
    books = [course["root"] / "shards" / f"grades-{k}.csv" for k in (1, 2, 3)]
    for k, book in enumerate(books, 1):
        grade(course, book, "--shard", f"{k}/3")
        assert len(read_rows(book)) == 1
    out = course["root"] / "merged" / "grades.csv"
    done = subprocess.run([sys.executable, "-m", "course_utils.grade", "--merge", *map(str, books), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    keys = ("add", "square", "total", "max", "status")
    assert {s: [r[k] for k in keys] for s, r in read_rows(out).items()} == \
        {s: [r[k] for k in keys] for s, r in one_run["rows"].items()}
    assert states(out.with_suffix("")) == states(one_run["book"].with_suffix(""))
    assert ("partial", "square", "part") in states(out.with_suffix(""))
    assert len(list(out.with_suffix("").glob("*/result.json"))) == len(course["students"])


def test_a_shard_that_holds_nobody_still_succeeds(course, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "partial.ipynb").write_bytes((course["subs"] / "partial.ipynb").read_bytes())      # shard 2 of 3
    book = tmp_path / "out" / "grades-1.csv"
    grade({**course, "subs": subs}, book, "--shard", "1/3")
    assert read_rows(book) == {} and book.with_suffix("").is_dir()
    assert json.loads(book.with_name("grades-1.shard.json").read_text())["shard"] == 1
