"""The instructor's options and outputs together, on a graded class on disk (as grade.py will call them)."""
from __future__ import annotations

import argparse
import csv
import json
import os
from datetime import timedelta

import nbformat
import pytest

from course_utils.grading import instructor, late, shards, written
from course_utils.grading.tables import load_results, read_gradebook
from grading_class import ASSIGNMENT, MAX, notebook, result, write_class

QUESTIONS = [{"id": q, "answer_name": q, "max_points": m} for q, m in MAX.items()]
DUE = "2026-12-01T23:59+00:00"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cnn-course-grade")
    p.add_argument("submissions", nargs="?")
    p.add_argument("--assignment", default=ASSIGNMENT)
    p.add_argument("--out", required=True)
    p.add_argument("--feedback")
    instructor.add_arguments(p)
    return p


def parse(*argv: str) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    instructor.check_arguments(p, args)
    return args


def test_options_are_checked_with_clear_messages(capsys):
    assert parse("--out", "b.csv", "--shard", "2/3").shard == (2, 3)
    for argv, why in [(["--shard", "4/3"], "K/N with 1 <= K <= N"), (["--due", "friday"], "ISO 8601"),
                      (["--format", "canvas"], "--format canvas needs --roster"),
                      (["--timestamps", "t.csv"], "--timestamps needs --due")]:
        with pytest.raises(SystemExit):
            parse("--out", "b.csv", *argv)
        assert why in capsys.readouterr().err


@pytest.fixture
def graded(tmp_path) -> dict:
    """Four students graded, with notebooks (one written answer) and hand-in files with set times."""
    wa = {"tags": [written.TAG], written.QUESTION_KEY: "why"}
    exercise = notebook(cells=[nbformat.v4.new_markdown_cell("YOUR ANSWER HERE", metadata=wa)])
    ex_path = tmp_path / "exercise.ipynb"
    nbformat.write(exercise, ex_path)
    results = [result("José García", {"add": 1, "square": 2}), result("late", {"add": 1, "square": 2}),
               result("partial", {"add": 1}, {"square": "square(3) returned 6, expected 9."}),
               result("essay.txt", {}, status="invalid")]
    nbs = {}
    for s in ("José García", "late", "partial"):
        nb = notebook()
        nb.cells.append(nbformat.v4.new_markdown_cell(f"{s} says: squares are not negative.", metadata=wa))
        nbs[s] = nb
    book, folder = write_class(tmp_path / "out", results, nbs)
    subs = tmp_path / "subs"
    subs.mkdir()
    submitted = {}
    for s, hours in (("José García", -1), ("late", 30), ("partial", 0), ("essay.txt", -5)):
        submitted[s] = subs / f"{s}.ipynb"
        submitted[s].write_text("{}")
        t = (late.parse_time(DUE) + timedelta(hours=hours)).timestamp()
        os.utime(submitted[s], (t, t))
    roster = tmp_path / "roster.csv"
    with open(roster, "w", newline="") as f:
        csv.writer(f).writerows([["student_id", "Student", "ID", "SIS User ID"],
                                 ["José García", "García, José", "1", "a"], ["late", "Late, Lou", "2", "b"],
                                 ["partial", "Part, Pam", "3", "c"], ["essay.txt", "Essay, Ed", "4", "d"]])
    return {"book": book, "folder": folder, "exercise": ex_path, "submitted": submitted, "roster": roster}


def test_after_grading_writes_every_report(graded):
    args = parse("--out", str(graded["book"]), "--due", DUE, "--late-penalty", "10", "--similarity",
                 "--format", "gradescope", "--format", "canvas", "--roster", str(graded["roster"]))
    paths = instructor.after_grading(args, graded["exercise"], QUESTIONS, graded["submitted"], graded["folder"])
    names = {p.name for p in paths}
    assert {"grades.stats.md", "grades.stats.png", "why.md", "scores.csv", "grades.late.csv", "grades.similarity.md",
            "grades.canvas.csv", "feedback.html", "results.json"} <= names
    results = load_results(graded["folder"])
    lou = json.loads((results["late"].folder / "results.json").read_text())
    assert lou["score"] == pytest.approx(2.4) and "2 started late period(s)" in lou["output"]
    assert "Late submission" in (results["late"].folder / "feedback.md").read_text()
    with open(graded["book"].with_name("grades.canvas.csv"), newline="") as f:
        canvas = {r[0]: r[-1] for r in csv.reader(f)}
    assert canvas == {"Student": ASSIGNMENT, "    Points Possible": "3", "Essay, Ed": "0", "García, José": "3",
                      "Late, Lou": "2.4", "Part, Pam": "1"}
    scores = graded["book"].with_name("grades.written") / "scores.csv"
    with open(scores, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["score"] = "1" if r["state"] == "answered" else ""
    with open(scores, "w", newline="") as f:
        writer = csv.DictWriter(f, written.SCORE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    args = parse("--out", str(graded["book"]), "--written-scores", str(scores), "--no-stats")
    instructor.after_grading(args, graded["exercise"], QUESTIONS, graded["submitted"], graded["folder"])
    book = read_gradebook(graded["book"]).by_student()
    jose = book["José García"]
    assert (jose["why"], jose["total"], jose["max"]) == ("1", "4", "4")
    assert (book["essay.txt"]["why"], book["essay.txt"]["total"]) == ("0", "0")


def test_merge_command_joins_shards_or_says_why(tmp_path, capsys):
    results = [result(f"s{i}", {"add": i % 2, "square": 2}) for i in range(9)]
    books = []
    for k in (1, 2, 3):
        book, folder = write_class(tmp_path, shards.shard(results, k, 3, key=lambda r: r["student"]), name=f"book-{k}")
        shards.write_info(book, ASSIGNMENT, k, 3, folder)
        books.append(str(book))
    assert instructor.merge_command(parse("--merge", *books[:2], "--out", str(tmp_path / "book.csv"))) == 2
    assert "shard(s) [3] of 3 are missing" in capsys.readouterr().err
    assert instructor.merge_command(parse("--merge", *books, "--out", str(tmp_path / "book.csv"))) == 0
    assert len(read_gradebook(tmp_path / "book.csv").rows) == 9 and len(load_results(tmp_path / "book")) == 9
