"""The grader's verdict before hand-in, and per-student variants through the grader.

One grading run (the instructor's command) of four hand-ins of sheet 01: the solution (`dave`), a
`conv2d_loops` that looks its results up in a table of alice's cases (handed in as `alice` and as
`bob`), and a sheet whose `conv_parameters` cell uses a name that a cell further down defines
(`carol`, whose kernel ran that cell first). `check_all(fresh=...)` is then run on the solution and on
carol's sheet, with the live namespace built by running the cells in the kernel's order.
"""
from __future__ import annotations

import copy
import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from course_utils.checks import check_all, set_student
from course_utils.grading.worker import is_check_cell
from test_variants import calls_seen, conv2d_loops

ROOT = Path(__file__).resolve().parent.parent
SHEET = "01_convolution_kernels"
SOLUTION = ROOT / "solutions" / f"{SHEET}.ipynb"


def cell_index(nb, start: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.lstrip().startswith(start))


def hard_coded_sheet() -> nbformat.NotebookNode:
    """The solution with conv2d_loops replaced by a table of its results on alice's cases."""
    table = {}
    for image, kernel, stride, padding in calls_seen("conv2d_loops", conv2d_loops, "alice"):
        key = (tuple(image.shape), stride, padding, round(float(image[0, 0]), 6))
        table[key] = conv2d_loops(image, kernel, stride, padding).tolist()
    set_student("")
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.cells[cell_index(nb, "def conv2d_loops")].source = (
        f"TABLE = {table!r}\n\ndef conv2d_loops(image, kernel, stride=1, padding=0):\n"
        "    key = (tuple(image.shape), stride, padding, round(float(image[0, 0]), 6))\n"
        "    return torch.tensor(TABLE.get(key, [[0.0]]), dtype=image.dtype)\n")
    return nb


def out_of_order_sheet() -> tuple[nbformat.NotebookNode, list[int]]:
    """The solution with `conv_parameters = n_weights + 16` and, in the next cell, n_weights; and the order
    in which the student's kernel ran the code cells (that next cell first)."""
    nb = nbformat.read(SOLUTION, as_version=4)
    i = cell_index(nb, "### BEGIN SOLUTION\nconv_parameters")
    nb.cells[i].source = "conv_parameters = n_weights + 16"
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell("n_weights = 16 * 3 * 5 * 5"))
    order = [j for j in range(len(nb.cells)) if j != i + 1]
    order.insert(order.index(i), i + 1)
    return nb, order


def live_namespace(nb: nbformat.NotebookNode, order: list[int], student_id: str) -> dict:
    """What a kernel holds after running the code cells in `order` (check cells left out), smoke parameters."""
    namespace = {"__name__": "__main__"}
    for j in order:
        cell = nb.cells[j]
        if cell.cell_type == "code" and not is_check_cell(cell.source):
            exec(compile(cell.source.replace("smoke = False", "smoke = True"), f"<cell {j + 1}>", "exec"), namespace)
    namespace["student_id"] = student_id
    return namespace


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fresh")
    subs = root / "subs"
    subs.mkdir()
    nbformat.write(nbformat.read(SOLUTION, as_version=4), subs / "dave.ipynb")
    hard = hard_coded_sheet()
    nbformat.write(hard, subs / "alice.ipynb")
    nbformat.write(copy.deepcopy(hard), subs / "bob.ipynb")
    carol, order = out_of_order_sheet()
    nbformat.write(carol, subs / "carol.ipynb")
    book = root / "book.csv"
    done = subprocess.run([sys.executable, "-m", "course_utils.grade", str(subs), "--assignment", SHEET, "--out",
                           str(book), "--quiet", "--jobs", "2", "--work", str(root)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(book, newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return {"rows": rows, "subs": subs, "carol": (carol, order)}


def test_the_hand_ins_name_chooses_the_cases_in_the_grader(graded):
    alice, bob = graded["rows"]["alice"], graded["rows"]["bob"]
    assert float(alice["conv2d_loops"]) == 2            # alice's own cases: the table holds them
    assert float(bob["conv2d_loops"]) == 0              # the same file handed in by bob meets other cases
    assert float(graded["rows"]["dave"]["total"]) == float(graded["rows"]["dave"]["max"])


def fresh_marks(output: str) -> dict[str, float]:
    """Points per question in the fresh verdict printed by check_all(fresh=...)."""
    verdict = output.split("The grader's verdict", 1)[1]
    return {m[1]: float(m[2]) for m in re.finditer(r"\[(\w+)\] .*?\(([\d.]+)/[\d.]+ points\)", verdict, re.S)}


def test_check_all_fresh_on_a_solution_prints_the_gradebook_row(graded, capsys):
    nb = nbformat.read(SOLUTION, as_version=4)
    namespace = live_namespace(nb, list(range(len(nb.cells))), "dave")
    start = time.monotonic()
    check_all(SHEET, namespace, fresh=str(graded["subs"] / "dave.ipynb"))
    seconds = time.monotonic() - start
    out = capsys.readouterr().out
    row = graded["rows"]["dave"]
    marks = fresh_marks(out)
    assert marks and marks == {q: float(row[q]) for q in marks}
    assert set(marks) == set(row) - {"student", "total", "max", "status", "seconds", "message"}
    assert f"{float(row['total']):g} of {float(row['max']):g} points" in out
    assert "Every question gets the same verdict" in out
    print(f"check_all(fresh=True) on sheet 01: {seconds:.0f} s")


def test_check_all_fresh_names_the_question_an_out_of_order_cell_changes(graded, capsys):
    nb, order = graded["carol"]
    namespace = live_namespace(nb, order, "carol")
    check_all(SHEET, namespace, fresh=str(graded["subs"] / "carol.ipynb"))
    out = capsys.readouterr().out
    assert float(graded["rows"]["carol"]["conv_parameters"]) == 0
    differing = out.split("Verdicts that differ", 1)[1]
    assert "[conv_parameters] here pass" in differing and "`n_weights`" in differing and "cell order" in differing
    assert "[output_size]" not in differing


def fake_grader(calls: list, row: dict):
    """A stand-in for the grader's command: records its arguments and writes the gradebook and one result.json."""
    def run(argv):
        calls.append(argv)
        work = Path(argv[argv.index("--work") + 1])
        with open(argv[argv.index("--out") + 1], "w", newline="") as f:
            writer = csv.DictWriter(f, list(row))
            writer.writeheader()
            writer.writerow(row)
        (work / "gradebook" / "me").mkdir(parents=True)
        (work / "gradebook" / "me" / "result.json").write_text(json.dumps({"questions": {}, "message": ""}))
        return 0, ""
    return run


def test_without_bubblewrap_the_sheet_is_graded_once_unsandboxed_with_one_thread_and_the_verdict_says_so(
        tmp_path, monkeypatch, capsys):
    from course_utils.grading import fresh
    calls = []
    row = {"student": "me", "total": "3", "max": "4", "status": "ok", "seconds": "1.0", "message": ""}
    monkeypatch.setattr(fresh, "run_grader", fake_grader(calls, row))
    monkeypatch.setattr(fresh.isolation, "problem", lambda: "the `bwrap` command (package bubblewrap) is not installed")
    (tmp_path / "work").mkdir()
    result = fresh.grade_saved(SOLUTION, SHEET, "me", tmp_path / "work")
    assert len(calls) == 1 and "--no-sandbox" in calls[0]
    assert fresh.FRESH_OPTIONS == ("--threads", "1", "--no-stats")
    assert " ".join(fresh.FRESH_OPTIONS) in " ".join(calls[0])
    fresh._show(result, 2.0)
    out = " ".join(capsys.readouterr().out.split())
    assert "without the grader's sandbox, which cannot start here: the `bwrap` command" in out
    assert "3 of 4 points" in out


def test_a_sheet_with_a_challenge_says_how_long_its_check_takes_first_as_measured_then_as_last_time(
        tmp_path, monkeypatch, capsys):
    from course_utils.grading import fresh
    monkeypatch.setenv("CNN_COURSE_CACHE", str(tmp_path / "cache"))
    saved = tmp_path / "03_two_layer_cnn.ipynb"
    saved.write_text(json.dumps({"cells": []}))
    row = {"student": "me", "total": "0", "max": "16", "status": "ok", "seconds": "1.0", "message": ""}
    monkeypatch.setattr(fresh, "grade_saved", lambda *a, **k: {"questions": {}, "row": row, "unsandboxed": ""})
    clock = iter([0.0, 52.4, 100.0, 130.0, 200.0, 210.0])
    monkeypatch.setattr(fresh.time, "monotonic", lambda: next(clock))
    fresh.fresh_check("03_two_layer_cnn", [], {}, str(saved))
    first = " ".join(capsys.readouterr().out.split())         # the lines as printed, wrapped
    assert f"takes about {fresh.CHALLENGE_FIRST_GUESS_S} s (measured on two CPU cores" in first
    assert "in the grader's sandbox" in first
    fresh.fresh_check("03_two_layer_cnn", [], {}, str(saved))
    again = " ".join(capsys.readouterr().out.split())
    assert "takes about 52 s (your last fresh check of this sheet took that long)" in again
    fresh.fresh_check(SHEET, [], {}, str(saved))
    assert "challenge" not in capsys.readouterr().out
