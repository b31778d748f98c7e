"""Generate exercises/ from solutions/: the solution notebooks are the single source.

In code cells, every region from a line `### BEGIN SOLUTION` to a line `### END SOLUTION`
becomes `# YOUR CODE HERE` and `raise NotImplementedError()` at the same indentation, except a
region that only assigns values to names (a prediction, a multiple-choice letter), which becomes
`name = None  # YOUR ANSWER HERE` for each name; outputs and execution counts are cleared. A cell tagged `written-answer` (a written question,
graded by hand) holds the model answer in solutions/ and the placeholder in exercises/.

    python -m course_utils.exercises           # regenerate exercises/
    python -m course_utils.exercises --check   # exit 1 if exercises/ is stale
"""
from __future__ import annotations

import argparse
import ast
import copy
import re
import textwrap
import sys
from pathlib import Path

import nbformat

from .grading.written import PLACEHOLDER, TAG as WRITTEN_TAG

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_REGION = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n.*?^[ \t]*{re.escape(END)}[^\n]*$",
                     re.MULTILINE | re.DOTALL)


def _assigned_names(body: str) -> list[str] | None:
    """The names a region's body assigns, if it is nothing but `name = value` statements; else None."""
    try:
        statements = ast.parse(textwrap.dedent(body)).body
    except SyntaxError:
        return None
    if not statements or not all(isinstance(s, ast.Assign) and len(s.targets) == 1
                                  and isinstance(s.targets[0], ast.Name) for s in statements):
        return None
    return list(dict.fromkeys(s.targets[0].id for s in statements))


def _stub(match: re.Match) -> str:
    """The student's version of one solution region."""
    indent, body = match[1], match[0].split("\n", 1)[1].rsplit("\n", 1)[0]
    names = _assigned_names(body)
    if names:
        return "\n".join(f"{indent}{name} = None  # YOUR ANSWER HERE" for name in names)
    return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()"


def strip_solutions(source: str) -> str:
    """Replace each BEGIN/END SOLUTION region of `source` by the stub, keeping its indentation."""
    if source.count(BEGIN) != source.count(END):
        raise ValueError(f"unbalanced {BEGIN!r}/{END!r} markers in cell:\n{source}")
    return _REGION.sub(_stub, source)


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of a solution notebook."""
    nb = copy.deepcopy(solution)
    for cell in nb.cells:
        if WRITTEN_TAG in cell.metadata.get("tags", []):
            cell.source = PLACEHOLDER
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs, cell.execution_count = [], None
    return nb


def expected_exercises(solutions: Path = ROOT / "solutions") -> dict[str, str]:
    """Map each exercise file name to the text it should have."""
    return {path.name: nbformat.writes(make_exercise(nbformat.read(path, as_version=4))) + "\n"
            for path in sorted(solutions.glob("*.ipynb"))}


def stale_exercises(exercises: Path = ROOT / "exercises", solutions: Path = ROOT / "solutions") -> list[str]:
    """Names of exercise notebooks that are missing, out of date, or have no solution."""
    expected = expected_exercises(solutions)
    stale = [name for name, text in expected.items()
             if not (exercises / name).is_file() or (exercises / name).read_text() != text]
    extra = [p.name for p in exercises.glob("*.ipynb") if p.name not in expected]
    return stale + extra


def main(argv: list[str] | None = None) -> int:
    """Regenerate exercises/ (or with --check, report stale files and exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report stale exercise notebooks")
    args = parser.parse_args(argv)
    exercises = ROOT / "exercises"
    if args.check:
        stale = stale_exercises(exercises)
        for name in stale:
            print(f"stale: exercises/{name} (run: python -m course_utils.exercises)")
        return 1 if stale else 0
    exercises.mkdir(exist_ok=True)
    for name, text in expected_exercises().items():
        (exercises / name).write_text(text)
        print(f"wrote exercises/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
