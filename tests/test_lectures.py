"""Lectures read as a lab: no code cell longer than a screen, every lecture states its time, and the course
defines each concept before it first uses it."""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LECTURES = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_CELL_LINES = 25
# term, the words that first use it, and the pattern of its definition (bold, where it is introduced)
TERMS = [("EMA", r"\bEMA\b|exponential moving average", r"\*\*(EMA|exponential moving average)"),
         ("BatchNorm", r"BatchNorm|batch normali[sz]ation", r"\*\*(BatchNorm|batch normali[sz]ation)"),
         ("Nesterov", r"Nesterov", r"\*\*Nesterov"),
         ("weight decay", r"weight decay|weight_decay", r"\*\*weight decay"),
         ("sharp minima", r"sharp (and flat )?minim|sharpness|flat minim", r"\*\*(sharp|flat|sharpness)")]


@pytest.mark.parametrize("path", sorted(ROOT.glob("[nes]*/*.ipynb")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_no_code_cell_is_longer_than_a_screen(path):
    cells = nbformat.read(path, as_version=4).cells
    long = [len(c.source.splitlines()) for c in cells if c.cell_type == "code" and len(c.source.splitlines()) > MAX_CELL_LINES]
    assert not long, f"code cells of {long} lines (limit {MAX_CELL_LINES}): move the logic into course_utils"


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_every_lecture_states_its_time(path):
    first = nbformat.read(path, as_version=4).cells[0].source
    assert re.search(r"\*\*Estimated time:\*\* .*\d", first), "state the estimated time in the first cell"


@pytest.mark.parametrize("term, used, defined", TERMS, ids=[t[0] for t in TERMS])
def test_a_term_is_defined_where_the_course_first_uses_it(term, used, defined):
    cells = [(p.stem, i, c) for p in LECTURES for i, c in enumerate(nbformat.read(p, as_version=4).cells)]
    first_use = next(((nb, i) for nb, i, c in cells if re.search(used, c.source, re.I)), None)
    definition = next(((nb, i) for nb, i, c in cells if c.cell_type == "markdown"
                       and re.search(defined, c.source, re.I)), None)
    assert definition, f"{term} is never defined (in bold where it is introduced)"
    assert first_use >= definition, f"{term} is used in {first_use} before its definition in {definition}"
