"""Item analysis of a graded class: pass rates, mean points, grouped mistakes, Markdown, CSV and PNG."""
from __future__ import annotations

import csv

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest

from course_utils.grading import stats
from course_utils.grading.tables import load_results
from grading_class import ASSIGNMENT, result, write_class

WRONG = "square({x}) returned {got}, expected {want}."
NOT_ATTEMPTED = "not attempted yet: replace `raise NotImplementedError()` in `square` with your code."


def test_messages_that_differ_only_in_values_group_together():
    a = stats.normalise(WRONG.format(x=3, got=6, want=9))
    assert a == stats.normalise(WRONG.format(x=-2, got=-4, want=4)) == "square(N) returned N, expected N."
    assert stats.normalise("got <object at 0x7f3a2b> for 'Alice'") == \
        stats.normalise("got <object at 0x55aa> for 'Bob'")
    assert stats.normalise("your code raised ValueError: bad\n   Hint: look (line 12: x = 1)") == \
        "your code raised ValueError: bad Hint: look (line N: x = N)"
    assert stats.normalise(NOT_ATTEMPTED) == stats.normalise("not attempted yet: `square` is None.")
    assert stats.normalise("shape (2, 3) instead of (3, 2)") != stats.normalise("dtype float64 instead of int64")
    assert stats.normalise("layer1 has 3x3 kernels") == "layer1 has 3x3 kernels"


def class_results() -> list[dict]:
    """Ten students: 5 fully right, 3 with the doubling mistake, 1 raising, 1 stub; one invalid hand-in."""
    out = [result(f"right-{i}", {"add": 1, "square": 2}) for i in range(5)]
    out += [result(f"José García {i}", {"add": 1, "square": 0}, {"square": WRONG.format(x=x, got=2 * x, want=x * x)})
            for i, x in enumerate((3, -2, 5))]
    out.append(result("raises", {"add": 0, "square": 1},
                      {"add": "your code raised TypeError: unsupported operand (line 2: return a - b)",
                       "square": "right values, wrong dtype: 1 of 2 points"}))
    out.append(result("stub", {}, {"add": NOT_ATTEMPTED.replace("square", "add"), "square": NOT_ATTEMPTED}))
    out.append(result("essay.txt", {}, {"add": "not graded", "square": "not graded"}, status="invalid"))
    return out


def test_item_analysis_counts_passes_partial_credit_and_mistakes():
    a = stats.analyse(class_results())
    add, square = a.questions
    assert (add.question, add.students, add.passed, add.pass_rate) == ("add", 10, 8, 0.8)
    assert (square.students, square.passed, square.partial, square.failed, square.not_attempted) == (10, 5, 1, 3, 1)
    assert dict(add.states) == {"pass": 8, "fail": 1, "todo": 1}
    assert square.mean_points == pytest.approx((5 * 2 + 1) / 10)
    assert square.mistakes.most_common(1) == [("square(N) returned N, expected N.", 3)]
    assert add.mistakes["not attempted yet"] == 1
    assert a.not_graded == 1 and len(a.totals) == 10 and a.max_total == 3
    assert sorted(a.totals) == sorted([3.0] * 5 + [1.0] * 3 + [1.0, 0.0])


def test_report_files_from_the_feedback_folder(tmp_path):
    book, folder = write_class(tmp_path, class_results())
    results = [r.result for r in load_results(folder).values()]
    paths = stats.write_report(results, ASSIGNMENT, book.with_suffix(""))
    assert sorted(p.name for p in paths.values()) == ["grades.mistakes.csv", "grades.stats.csv",
                                                       "grades.stats.md", "grades.stats.png"]
    text = paths["stats.md"].read_text()
    assert "| `square` | 2 | 50% (5/10) | 1.10 | 5 | 1 | 3 | 1 |" in text
    assert "| 3 | square(N) returned N, expected N. |" in text and "1 invalid hand-in(s), not graded" in text
    with open(paths["stats.csv"], newline="") as f:
        rows = {r["question"]: r for r in csv.DictReader(f)}
    assert rows["add"]["pass_rate"] == "0.8000" and rows["square"]["mean_points"] == "1.1000"
    assert [rows["square"][k] for k in ("passed", "partly_right", "failed", "not_attempted")] == ["5", "1", "3", "1"]
    with open(paths["mistakes.csv"], newline="") as f:
        mistakes = list(csv.DictReader(f))
    square = [m for m in mistakes if m["question"] == "square"]
    assert square[0] == {"question": "square", "students": "3", "mistake": "square(N) returned N, expected N."}
    assert sum(int(m["students"]) for m in mistakes) == (10 - 8) + (10 - 5)
    image = matplotlib.image.imread(paths["stats.png"])
    assert image.ndim == 3 and image.shape[1] > image.shape[0] > 200
    pixels = (image[..., :3] * 255).round().reshape(-1, 3)
    for state in ("pass", "part", "fail", "todo"):          # every state of the class has its bar segment
        colour = np.array(matplotlib.colors.to_rgb(stats.COLOURS[state])) * 255
        assert (np.abs(pixels - colour).max(axis=1) < 3).sum() > 50, state


def test_a_class_with_no_mistakes_and_a_markdown_pipe():
    rows = [result("a|b", {"add": 1, "square": 2})]
    text = stats.markdown(stats.analyse(rows), ASSIGNMENT)
    assert "Every graded student got full points." in text and "100% (1/1)" in text
    rows = [result("c", {"add": 0}, {"add": "expected a|b, got <b>"})]
    assert "expected a\\|b, got &lt;b>" in stats.markdown(stats.analyse(rows), ASSIGNMENT)


def test_the_state_the_check_gave_counts_over_points():
    """Results written before questions had a state get it from their points and message."""
    part = result("p", {"add": 1, "square": 1}, {"square": "right values, wrong dtype"})
    old = result("o", {"add": 1, "square": 1})
    for q in old["questions"].values():
        del q["state"]
    a = stats.analyse([part, old])
    assert dict(a.questions[1].states) == {"part": 2} and a.questions[1].mistakes["right values, wrong dtype"] == 1
