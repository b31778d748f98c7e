"""Lectures read as a lab: a core path that fits a 2-hour lab, no code cell longer than a screen, every lecture
states its time, and the course defines each concept before it first uses it."""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LECTURES = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_CELL_LINES = 25
# A lecture's core path: every cell before its optional part. At 120-150 words a minute for prose with formulas,
# 2,000 words and 250 lines of code read with understanding leave time in a 2-hour lab for the runs and the sheet.
OPTIONAL = re.compile(r"#+\s*Going further \(optional\)")
MAX_CORE_WORDS = 2000
MAX_CORE_CODE_LINES = 250
# term, the words that first use it, and the pattern of its definition (bold, where it is introduced)
TERMS = [("EMA", r"\bEMA\b|exponential moving average", r"\*\*(EMA|exponential moving average)"),
         ("BatchNorm", r"BatchNorm|batch normali[sz]ation", r"\*\*(BatchNorm|batch normali[sz]ation)"),
         ("Nesterov", r"Nesterov", r"\*\*Nesterov"),
         ("weight decay", r"weight decay|weight_decay", r"\*\*weight decay"),
         ("sharp minima", r"sharp (and flat )?minim|sharpness|flat minim", r"\*\*(sharp|flat|sharpness)")]


def core_cells(cells: list) -> list:
    """The cells before the first markdown heading `Going further (optional)`."""
    end = next((i for i, c in enumerate(cells) if c.cell_type == "markdown" and OPTIONAL.match(c.source.strip())),
               len(cells))
    return cells[:end]


def prose_words(markdown: str) -> int:
    """Words of prose: display and inline math, fenced and inline code removed."""
    for pattern in (r"\$\$.*?\$\$", r"\$[^$]*\$", r"```.*?```", r"`[^`]*`"):
        markdown = re.sub(pattern, " ", markdown, flags=re.S)
    return len(re.findall(r"[A-Za-z][A-Za-z'’-]*", markdown))


def test_prose_words_leave_out_math_and_code():
    assert prose_words("The loss $L = -\\log p$ is `F.cross_entropy`:\n$$\\frac{a}{b}$$\nit's small.") == 5


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_the_core_path_fits_a_lab(path):
    cells = nbformat.read(path, as_version=4).cells
    core = core_cells(cells)
    words = sum(prose_words(c.source) for c in core if c.cell_type == "markdown")
    lines = sum(1 for c in core if c.cell_type == "code" for line in c.source.splitlines() if line.strip())
    assert words <= MAX_CORE_WORDS, f"core path has {words} prose words (limit {MAX_CORE_WORDS}): move depth into \
'## Going further (optional)' after the summary"
    assert lines <= MAX_CORE_CODE_LINES, f"core path has {lines} code lines (limit {MAX_CORE_CODE_LINES}): move \
plumbing into course_utils or depth into the optional part"
    if len(core) < len(cells):
        assert any(c.cell_type == "markdown" and re.match(r"#+\s*Summary", c.source.strip()) for c in core), (
            "the optional part comes after the core path's summary")


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
