"""Every notebook runs top to bottom with smoke parameters: papermill for all, nbval for lectures and solutions.

Exercise notebooks must run too, with every check saying "not attempted" (or, for a written
question, "recorded for your instructor"), and their last cell, `check_all()`, listing every question;
`hint()` works in the same fresh kernel. Solution notebooks must pass every check.
"""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from course_utils.checks import questions_for, written_for
from course_utils.run_notebooks import KERNEL, ROOT, run_notebook

SMOKE = {"smoke": True}
NOTEBOOKS = sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(ROOT.glob("solutions/*.ipynb")) \
    + sorted(ROOT.glob("exercises/*.ipynb"))


def notebook_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def check_lines(nb: nbformat.NotebookNode) -> list[str]:
    """The lines printed by `check(...)` cells."""
    return [line for cell in nb.cells if cell.cell_type == "code" and "check(" in cell.source
            for out in cell.get("outputs", []) if out.get("name") == "stdout"
            for line in out["text"].splitlines() if line and line[:1] in "✅❌⏳✍🟡"]


def count_check_cells(nb: nbformat.NotebookNode) -> int:
    return sum(1 for cell in nb.cells if cell.cell_type == "code" and cell.source.lstrip().startswith("check("))


def test_there_is_a_notebook_in_each_folder():
    assert {p.parent.name for p in NOTEBOOKS} == {"notebooks", "solutions", "exercises"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_has_a_parameters_cell_with_smoke(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1 and "smoke = False" in cells[0].source
    assert nb.metadata.kernelspec.name == "python3", "declare the standard python3 kernelspec: opens on any Jupyter"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"


def check_all_rows(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Question id -> state word of the table printed by the sheet's last cell, `check_all()`."""
    last = nb.cells[-1]
    assert last.cell_type == "code" and last.source.strip() == "check_all()", "end the sheet with check_all()"
    text = "".join(out.get("text", "") for out in last.outputs if out.get("name") == "stdout")
    return {line.split()[2]: line.split()[1] for line in text.splitlines() if line and line[:1] in "✅❌⏳✍🟡"}


def with_hint_cell(path: Path, qid: str, out: Path) -> Path:
    """A copy of the sheet that asks for two hints of `qid` after its last cell."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"from course_utils.checks import hint\nhint({qid!r})\nhint({qid!r})"))
    (out / path.parent.name).mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / path.parent.name / path.name)
    return out / path.parent.name / path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_papermill_smoke_run(path, tmp_path):
    sheet = path.parent.name in ("exercises", "solutions")
    questions = questions_for(path.stem) + written_for(path.stem) if sheet else []
    run_path = with_hint_cell(path, questions[0].id, tmp_path / "in") if sheet else path
    result = run_notebook(run_path, tmp_path, SMOKE, cell_timeout=600)
    assert result.status == "ok", result.status
    executed = nbformat.read(tmp_path / path.parent.name / path.name, as_version=4)
    lines = check_lines(executed)
    assert len(lines) == count_check_cells(executed)
    written = {q.id for q in questions if q.kind == "written"}
    if path.parent.name == "exercises":
        assert lines and all(line.startswith("⏳ TODO") and "not attempted yet" in line
                             or line.startswith("✍ WRITTEN") for line in lines), lines
    if path.parent.name == "solutions":
        assert lines and all(line.startswith(("✅ PASS", "✍ WRITTEN")) for line in lines), lines
    if sheet:
        executed.cells.pop()                              # the hint cell appended above
        rows = check_all_rows(executed)
        assert set(rows) == {q.id for q in questions}, "check_all() lists every question of the notebook"
        todo = "TODO" if path.parent.name == "exercises" else "PASS"
        assert all(state == ("WRITTEN" if qid in written else todo) for qid, state in rows.items()), rows
        hints = "".join(out.get("text", "") for out in nbformat.read(
            tmp_path / path.parent.name / path.name, as_version=4).cells[-1].outputs)
        assert f"HINT 1/" in hints and (f"HINT 2/" in hints or "HINT 1/1" in hints), hints


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.parent.name != "exercises"], ids=notebook_id)
def test_nbval_lax_smoke_run(path, tmp_path):
    copy = tmp_path / path.name
    nbformat.write(parameterize_notebook(load_notebook_node(str(path)), SMOKE), copy)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                          "--nbval-kernel-name", KERNEL, "--nbval-cell-timeout", "600", str(copy)],
                         cwd=tmp_path, capture_output=True, text=True, env=os.environ)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_an_exercise_sheet_runs_with_the_plain_python3_kernel(tmp_path):
    """The standard kernelspec the notebooks declare is enough: no course-named kernel needed."""
    path = ROOT / "exercises" / "01_convolution_kernels.ipynb"
    result = run_notebook(path, tmp_path, SMOKE, kernel="python3", cell_timeout=600)
    assert result.status == "ok", result.status
    lines = check_lines(nbformat.read(tmp_path / "exercises" / path.name, as_version=4))
    assert lines and all(line.startswith(("⏳ TODO", "✍ WRITTEN")) for line in lines), lines
