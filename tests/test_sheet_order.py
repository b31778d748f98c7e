"""Sheets ask in the right order: a prediction is checked before any cell can measure it."""
from pathlib import Path

import nbformat
import pytest

from course_utils.checks import load_all

ROOT = Path(__file__).resolve().parent.parent
PREDICTIONS = sorted((q for q in load_all().values() if q.kind == "predict"), key=lambda q: (q.notebook, q.id))


@pytest.mark.parametrize("folder", ["solutions", "exercises"])
@pytest.mark.parametrize("question", PREDICTIONS, ids=lambda q: q.id)
def test_a_prediction_is_checked_by_the_cell_right_after_it(folder, question):
    cells = nbformat.read(ROOT / folder / f"{question.notebook}.ipynb", as_version=4).cells
    code = [c.source for c in cells if c.cell_type == "code"]
    answer = [i for i, s in enumerate(code) if s.lstrip().startswith(("### BEGIN SOLUTION", f"{question.answer_name} ="))
              and f"{question.answer_name} =" in s]
    assert len(answer) == 1, f"one cell should record {question.answer_name}"
    following = code[answer[0] + 1].strip()
    assert following.startswith(f'check("{question.id}"'), (
        f"{folder}/{question.notebook}: the cell after the prediction runs `{following[:60]}`, not its check")
