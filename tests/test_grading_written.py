"""Written answers: found by cell metadata in real notebooks, exported per question, scores merged back."""
from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest

from course_utils.checks import written_for
from course_utils.exercises import ROOT
from course_utils.grading import written
from course_utils.grading.tables import load_results, read_gradebook
from grading_class import ASSIGNMENT, notebook, result, write_class

md = nbformat.v4.new_markdown_cell


def answer_cell(qid: str, text: str = "YOUR ANSWER HERE", **meta) -> nbformat.NotebookNode:
    return md(text, metadata={"tags": [written.TAG], written.QUESTION_KEY: qid, **meta})


def exercise() -> nbformat.NotebookNode:
    return notebook(cells=[md("Why does max pooling help with small shifts?"), answer_cell("why_pool"),
                           md("Explain the **shortcut** of a residual block."),
                           answer_cell("shortcut", "Your answer:", written_points=2)])


def student(pool: str | None, shortcut: str | None) -> nbformat.NotebookNode:
    """A hand-in: None deletes that written cell, text replaces its placeholder."""
    nb = exercise()
    keep = []
    for cell in nb.cells:
        qid = cell.metadata.get(written.QUESTION_KEY)
        text = {"why_pool": pool, "shortcut": shortcut}.get(qid, cell.source) if qid else cell.source
        if text is not None:
            cell.source = text
            keep.append(cell)
    nb.cells = keep
    return nb


CLASS = {
    "José García": student("The maximum ignores where in the window it is.", "It adds x back: y = F(x) + x."),
    "placeholder": student("YOUR ANSWER HERE", "  Your answer:\n"),
    "deleted": student(None, None),
    "heading": student("# My answer\nA shift inside the window keeps the max.\n\n<b>bold</b>", ""),
}


@pytest.fixture
def graded(tmp_path) -> dict:
    """A graded class with written answers on disk: exercise, gradebook, feedback folder, notebooks."""
    results = [result(s, {"add": 1, "square": 2}) for s in CLASS] + [result("no_file", {}, status="invalid")]
    book, folder = write_class(tmp_path, results, CLASS)
    ex = tmp_path / "exercise.ipynb"
    nbformat.write(exercise(), ex)
    notebooks = {s: r.notebook for s, r in load_results(folder).items()}
    return {"book": book, "folder": folder, "exercise": ex, "notebooks": notebooks, "root": tmp_path}


def test_questions_come_from_the_exercise_metadata():
    qs = written.written_questions(exercise())
    assert [(q.id, q.max_points, q.placeholder) for q in qs] == [("why_pool", 1, "YOUR ANSWER HERE"),
                                                                 ("shortcut", 2, "Your answer:")]
    assert qs[1].prompt == "Explain the **shortcut** of a residual block."
    bad = notebook(cells=[md("x", metadata={"tags": [written.TAG]})])
    with pytest.raises(ValueError, match="written_question"):
        written.written_questions(bad)
    twice = notebook(cells=[answer_cell("q"), answer_cell("q")])
    with pytest.raises(ValueError, match="two cells"):
        written.written_questions(twice)


def test_every_student_gets_a_row_per_question_whatever_they_did(graded):
    qs = written.written_questions(exercise())
    answers = {(a.student, a.question): a for a in written.collect(graded["notebooks"], qs)}
    assert len(answers) == 5 * 2
    assert answers["José García", "shortcut"].text == "It adds x back: y = F(x) + x."
    assert answers["placeholder", "why_pool"].state == answers["placeholder", "shortcut"].state == "empty"
    assert answers["deleted", "why_pool"].state == "deleted"
    assert answers["heading", "shortcut"].state == "empty"
    assert answers["no_file", "shortcut"].state == "no notebook"
    moved = exercise()                          # cells reordered, the answer cell copied
    moved.cells = moved.cells[::-1] + [answer_cell("why_pool", "and a second thought")]
    next(c for c in moved.cells if c.metadata.get(written.QUESTION_KEY) == "why_pool").source = "first thought"
    found = {a.question: a for a in written.answers_in(moved, "m", qs)}
    assert found["why_pool"] == written.Answer("m", "why_pool", "answered", "first thought\n\nand a second thought")
    assert found["shortcut"].state == "empty"


def test_export_writes_one_sheet_per_question_and_an_empty_score_sheet(graded):
    paths = written.export_written(graded["exercise"], graded["notebooks"], graded["root"] / "written", ASSIGNMENT)
    assert sorted(paths) == ["scores", "shortcut", "why_pool"]
    sheet = paths["why_pool"].read_text()
    assert "## José García\n\n> The maximum ignores where in the window it is." in sheet
    assert "> # My answer" in sheet and "&lt;b>bold&lt;/b>" in sheet        # headings and HTML stay quoted
    assert "## deleted\n\n*(deleted)*" in sheet and "## no_file\n\n*(no notebook)*" in sheet
    assert "2 of 5 students answered" in sheet
    with open(paths["scores"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["question"] for r in rows] == ["why_pool"] * 5 + ["shortcut"] * 5
    assert all(r["score"] == "" for r in rows) and rows[5]["max_points"] == "2"


def fill(path: Path, scores: dict[tuple[str, str], str]) -> Path:
    """Fill the exported scores.csv like an instructor would (in a spreadsheet)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["score"] = scores.get((r["student"], r["question"]), r["score"])
    out = path.with_name("filled.csv")
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, written.SCORE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_filled_scores_merge_into_the_gradebook_and_can_be_merged_again(graded):
    paths = written.export_written(graded["exercise"], graded["notebooks"], graded["root"] / "written", ASSIGNMENT)
    filled = fill(paths["scores"], {("José García", "why_pool"): "1", ("José García", "shortcut"): "1.5",
                                    ("heading", "why_pool"): "0.5"})
    merged = written.merge_written(graded["book"], filled, graded["exercise"], autograded=("add", "square"))
    book = read_gradebook(graded["book"])
    assert book.columns == ["student", "add", "square", "why_pool", "shortcut", "total", "max", "status",
                            "seconds", "message"] == merged.columns
    rows = book.by_student()
    jose = rows["José García"]
    assert (jose["total"], jose["max"], jose["shortcut"]) == ("5.5", "6", "1.5")
    assert (rows["deleted"]["why_pool"], rows["deleted"]["total"]) == ("0", "3")
    assert rows["no_file"]["total"] == "0" and rows["no_file"]["max"] == "6"
    again = fill(paths["scores"], {("José García", "why_pool"): "0", ("José García", "shortcut"): "2",
                                   ("heading", "why_pool"): "1"})
    written.merge_written(graded["book"], again, graded["exercise"])
    rows = read_gradebook(graded["book"]).by_student()
    assert (rows["José García"]["total"], rows["José García"]["max"], rows["heading"]["total"]) == ("5", "6", "4")


def test_bad_score_sheets_are_refused_with_every_problem_named(graded):
    paths = written.export_written(graded["exercise"], graded["notebooks"], graded["root"] / "written", ASSIGNMENT)
    before = graded["book"].read_bytes()
    filled = fill(paths["scores"], {("José García", "why_pool"): "ten", ("José García", "shortcut"): "3",
                                    ("heading", "why_pool"): "-1"})
    with open(filled, "a", newline="") as f:
        csv.writer(f).writerows([["mallory", "why_pool", "1", "answered", "1", ""],
                                 ["heading", "essay", "1", "answered", "1", ""],
                                 ["heading", "why_pool", "1", "answered", "1", ""]])
    with pytest.raises(ValueError) as err:
        written.merge_written(graded["book"], filled, graded["exercise"])
    text = str(err.value)
    for expected in ("'ten', not a number", "score 3 is outside 0..2", "score -1 is outside 0..1",
                     "no such student", "no written question 'essay'", "scored twice", "row 12"):
        assert expected in text, expected
    assert graded["book"].read_bytes() == before
    unscored = fill(paths["scores"], {})
    with pytest.raises(ValueError, match="3 problem"):        # the three real answers have no score yet
        written.merge_written(graded["book"], unscored, graded["exercise"])
    merged = written.merge_written(graded["book"], unscored, graded["exercise"], allow_unscored=True)
    assert merged.by_student()["José García"]["why_pool"] == ""
    with pytest.raises(ValueError, match="ids of checked questions"):
        written.merge_written(graded["book"], unscored, graded["exercise"], autograded=("why_pool",))


def test_written_scores_survive_a_regrade(graded):
    """set_aside gives the grader its own columns back; put_back restores the written scores."""
    paths = written.export_written(graded["exercise"], graded["notebooks"], graded["root"] / "written", ASSIGNMENT)
    original = read_gradebook(graded["book"])
    filled = fill(paths["scores"], {("José García", "why_pool"): "1", ("José García", "shortcut"): "0.5",
                                    ("heading", "why_pool"): "1"})
    merged = written.merge_written(graded["book"], filled, graded["exercise"])
    kept = written.set_aside(graded["book"], graded["exercise"])
    assert read_gradebook(graded["book"]) == original
    assert kept[("José García", "shortcut")] == 0.5 and kept[("deleted", "why_pool")] == 0
    written.put_back(graded["book"], graded["exercise"], kept)
    assert read_gradebook(graded["book"]) == merged
    assert written.set_aside(graded["root"] / "none.csv", graded["exercise"]) == {}


def test_exporting_again_keeps_the_marking_already_entered(graded):
    paths = written.export_written(graded["exercise"], graded["notebooks"], graded["root"] / "written", ASSIGNMENT)
    filled = fill(paths["scores"], {("José García", "why_pool"): "1", ("heading", "why_pool"): "0.5"})
    filled.replace(paths["scores"])                          # the instructor saved over scores.csv
    with open(paths["scores"], "a", newline="") as f:
        csv.writer(f).writerow(["gone", "why_pool", "1", "answered", "1", "left the course"])
    del graded["notebooks"]["placeholder"]
    written.export_written(graded["exercise"], graded["notebooks"], graded["root"] / "written", ASSIGNMENT)
    with open(paths["scores"], newline="") as f:
        rows = {(r["student"], r["question"]): r for r in csv.DictReader(f)}
    assert rows["José García", "why_pool"]["score"] == "1" and rows["heading", "why_pool"]["score"] == "0.5"
    assert rows["gone", "why_pool"]["comment"] == "left the course" and ("placeholder", "why_pool") not in rows
    assert rows["deleted", "shortcut"]["score"] == ""


def test_cells_and_registered_written_questions_must_agree():
    cells = [written.WrittenQuestion("why_pool", 2, "Why?", written.PLACEHOLDER),
             written.WrittenQuestion("unregistered", 1, "What?", written.PLACEHOLDER)]
    problems = written.registry_problems(cells, {"why_pool": 1, "no_cell": 1})
    assert problems == ["written question 'no_cell' is registered but the exercise has no cell tagged "
                        "'written-answer' for it",
                        "the exercise's written-answer cell 'unregistered' is not registered with written_question(...)",
                        "written question 'why_pool' is worth 1 points when registered but 2 in its cell's "
                        "'written_points'"]
    assert written.registry_problems(cells[:1], {"why_pool": 2}) == []


@pytest.mark.parametrize("assignment", sorted(p.stem for p in (ROOT / "exercises").glob("*.ipynb")))
def test_every_exercise_sheet_agrees_with_its_registered_written_questions(assignment):
    questions = written.written_questions(nbformat.read(ROOT / "exercises" / f"{assignment}.ipynb", as_version=4))
    registered = {w.id: w.max_points for w in written_for(assignment)}
    assert written.registry_problems(questions, registered) == []
    assert all(q.placeholder == written.PLACEHOLDER for q in questions)
