"""Exports: Gradescope results.json per student, a Canvas gradebook import, HTML feedback beside feedback.md."""
from __future__ import annotations

import csv
import json
from html.parser import HTMLParser

import pytest

from course_utils.grading import exports
from course_utils.grading.tables import load_results, read_gradebook
from grading_class import ASSIGNMENT, result, write_class

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=1>'


def class_results() -> list[dict]:
    return [result("José García", {"add": 1, "square": 2}),
            result("bob", {"add": 1, "square": 0}, {"square": "square(3) returned 6, expected 9."}),
            result(f"eve{HOSTILE}", {"add": 0}, {"add": HOSTILE, "square": "not attempted yet"},
                   status="error", message=f"cell 4 raised {HOSTILE}")]


def test_gradescope_results_have_one_test_per_question(tmp_path):
    book, folder = write_class(tmp_path, class_results())
    results = load_results(folder)
    paths = exports.write_gradescope(results, scores={"bob": 0.9})
    assert sorted(p.parent for p in paths) == sorted(r.folder for r in results.values())
    by_student = {s: json.loads((r.folder / "results.json").read_text()) for s, r in results.items()}
    jose = by_student["José García"]
    assert jose["score"] == 3.0 and [t["name"] for t in jose["tests"]] == ["add", "square"]
    assert [(t["score"], t["max_score"], t["status"]) for t in jose["tests"]] == [(1, 1, "passed"), (2, 2, "passed")]
    assert sum(t["score"] for t in jose["tests"]) == jose["score"]
    bob = by_student["bob"]
    assert bob["score"] == 0.9 and bob["tests"][1]["output"] == "❌ FAIL: square(3) returned 6, expected 9."
    assert bob["output_format"] == bob["tests"][0]["output_format"] == "md"
    eve = by_student[f"eve{HOSTILE}"]
    assert "<script>" not in json.dumps(eve) and "&lt;script&gt;" in eve["tests"][0]["output"]
    assert "status `error`" in eve["output"] and "cell 4 raised" in eve["output"]


ROSTER = [["student_id", "name", "ID", "SIS User ID", "SIS Login ID", "Section"],
          ["José García", "García, José", "101", "S-1", "jgarcia", "A"],
          ["bob", "Builder, Bob", "102", "S-2", "bbuilder", "B"],
          ["absent", "Absent, Ann", "103", "S-3", "aabsent", "A"]]


def write_roster(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def test_canvas_import_has_canvas_columns_and_every_roster_student(tmp_path):
    results = class_results()[:2]
    book, _ = write_class(tmp_path, results)
    write_roster(tmp_path / "roster.csv", ROSTER)
    totals = exports.totals_of(read_gradebook(book).rows)
    out = exports.write_canvas(totals, tmp_path / "roster.csv", tmp_path / "canvas.csv", "Lab 0 (4711)", 3)
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 0 (4711)"]
    assert rows[1] == ["    Points Possible", "", "", "", "", "3"]
    assert rows[2:] == [["Absent, Ann", "103", "S-3", "aabsent", "A", ""],
                        ["Builder, Bob", "102", "S-2", "bbuilder", "B", "1"],
                        ["García, José", "101", "S-1", "jgarcia", "A", "3"]]


def test_canvas_roster_problems_are_refused(tmp_path):
    write_roster(tmp_path / "roster.csv", ROSTER[:2])
    with pytest.raises(ValueError, match="1 graded students are not in the roster: bob"):
        exports.write_canvas({"José García": 3, "bob": 1}, tmp_path / "roster.csv", tmp_path / "c.csv", "Lab 0", 3)
    write_roster(tmp_path / "bad.csv", [["name", "email"], ["Bob", "b@x"]])
    with pytest.raises(ValueError, match="no column SIS Login ID, ID, SIS User ID"):
        exports.read_roster(tmp_path / "bad.csv")
    write_roster(tmp_path / "twice.csv", ROSTER[:2] + ROSTER[1:2])
    with pytest.raises(ValueError, match="twice"):
        exports.read_roster(tmp_path / "twice.csv")


def test_a_canvas_gradebook_export_is_a_roster(tmp_path):
    """Canvas's own export (no `student_id` column, a Points Possible row) keys students by SIS Login ID."""
    export = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 0 (4711)"],
              ["    Points Possible", "", "", "", "", "3.00"],
              ["Builder, Bob", "102", "S-2", "bbuilder", "B", ""]]
    write_roster(tmp_path / "export.csv", export)
    roster = exports.read_roster(tmp_path / "export.csv")
    assert list(roster) == ["bbuilder"] and roster["bbuilder"].canvas_id == "102"


class Collect(HTMLParser):
    """The tags and text of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_html_feedback_beside_feedback_md_escapes_everything(tmp_path):
    _, folder = write_class(tmp_path, class_results())
    results = load_results(folder)
    paths = exports.write_html_feedback(results, ASSIGNMENT)
    assert all((p.parent / "feedback.md").is_file() for p in paths) and len(paths) == 3
    eve = results[f"eve{HOSTILE}"].folder / "feedback.html"
    page = Collect()
    page.feed(eve.read_text())
    assert "script" not in page.tags and "img" not in page.tags
    text = "".join(page.text)
    assert HOSTILE in text and f"feedback for eve{HOSTILE}" in text and "0 / 3 points" in text
    jose = (results["José García"].folder / "feedback.html").read_text()
    assert jose.count('<tr class="full">') == 2 and "García" in jose


def test_late_notes_reach_html_and_gradescope(tmp_path):
    _, folder = write_class(tmp_path, class_results())
    results = load_results(folder)
    note = "Handed in 2.0 h late: 10 % off <b>"
    exports.write_html_feedback(results, ASSIGNMENT, {"bob": note})
    page = (results["bob"].folder / "feedback.html").read_text()
    assert "<h2>Late submission</h2><p>Handed in 2.0 h late: 10 % off &lt;b&gt;</p>" in page
    assert "Late submission" not in (results["José García"].folder / "feedback.html").read_text()
    exports.write_gradescope(results, {"bob": 0.9}, {"bob": note})
    bob = json.loads((results["bob"].folder / "results.json").read_text())
    assert bob["score"] == 0.9 and bob["output"].endswith("10 % off &lt;b&gt;")


PART = "square(2.0) is a float.\n   Partial credit: 1 of 2 points for the right values."


def test_partial_credit_reaches_every_export(tmp_path):
    results = [result("ana", {"add": 1, "square": 1}, {"square": PART}), result("bob", {"add": 1, "square": 2})]
    book, folder = write_class(tmp_path, results)
    found = load_results(folder)
    exports.write_gradescope(found)
    exports.write_html_feedback(found, ASSIGNMENT)
    ana = found["ana"].folder
    square = json.loads((ana / "results.json").read_text())["tests"][1]
    assert (square["score"], square["max_score"], square["status"]) == (1.0, 2.0, "failed")
    assert square["output"].startswith("🟡 PART: ") and "1 of 2 points for the right values" in square["output"]
    md = (ana / "feedback.md").read_text()
    assert "| `square` | 🟡 PART | 1 / 2 | - | square(2.0) is a float. Partial credit: 1 of 2 points for the right" in md
    assert "Questions: 1 pass, 1 part." in md
    page = (ana / "feedback.html").read_text()
    assert '<tr class="part"><td><code>square</code></td><td>🟡 PART</td><td>1 / 2</td>' in page
    write_roster(tmp_path / "roster.csv", [ROSTER[0], ["ana", "A, Ana", "1", "S-1"], ["bob", "B, Bob", "2", "S-2"]])
    out = exports.write_canvas(exports.totals_of(read_gradebook(book).rows), tmp_path / "roster.csv",
                               tmp_path / "canvas.csv", "Lab 0", 3)
    with open(out, newline="", encoding="utf-8") as f:
        assert [r[-1] for r in csv.reader(f)][2:] == ["2", "3"]
