"""Finding the notebooks handed in and reading them safely, before any of their code runs."""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat

MAX_BYTES = 64 * 2**20


class InvalidSubmission(Exception):
    """The file handed in cannot be graded; the message says why, for the gradebook."""


@dataclass(frozen=True)
class Submission:
    """One student's hand-in: their id and the file (None if their folder holds no notebook)."""

    student: str
    path: Path | None
    problem: str = ""


def student_id(name: str) -> str:
    """A file-system-safe student id made from a file or folder name."""
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name).strip("._") or "student"


def discover(folder: Path, assignment: str) -> list[Submission]:
    """One Submission per entry of `folder`: `ID.ipynb` files, or `ID/` folders holding the notebook.

    Any other file is kept too (as a non-notebook), so that every student appears in the gradebook.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist; pass the folder that "
                                "holds one notebook (or one folder) per student.")
    found: list[Submission] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            notebooks = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            named = [p for p in notebooks if p.name == f"{assignment}.ipynb"]
            if len(named) == 1 or len(notebooks) == 1:
                found.append(Submission(student_id(entry.name), (named or notebooks)[0]))
            else:
                why = "holds no .ipynb file" if not notebooks else \
                      f"holds {len(notebooks)} notebooks and none is named {assignment}.ipynb"
                found.append(Submission(student_id(entry.name), None, f"the folder {why}"))
        else:
            stem = entry.stem if entry.suffix == ".ipynb" else entry.name
            found.append(Submission(student_id(stem), entry))
    seen: set[str] = set()
    for i, sub in enumerate(found):                    # alice.ipynb and alice/: alice, alice-2
        n, sid = 1, sub.student
        while sid in seen:
            n, sid = n + 1, f"{sub.student}-{n + 1}"
        seen.add(sid)
        found[i] = Submission(sid, sub.path, sub.problem)
    return found


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at `path` as nbformat 4.5 with cell ids and no outputs; InvalidSubmission if it is none."""
    if path.suffix != ".ipynb":
        raise InvalidSubmission(f"{path.name} is not a notebook (.ipynb)")
    size = path.stat().st_size
    if size == 0:
        raise InvalidSubmission("the file is empty")
    if size > MAX_BYTES:
        raise InvalidSubmission(f"the file is {size / 2**20:.0f} MB (limit {MAX_BYTES // 2**20} MB); "
                                "clear the outputs and hand it in again")
    try:
        text = path.read_bytes().decode("utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise InvalidSubmission(f"not valid notebook JSON ({type(err).__name__}: {str(err)[:80]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int):
        raise InvalidSubmission("JSON, but not a notebook (no nbformat version)")
    try:
        nb = nbformat.reads(text, as_version=4)
        nb = nbformat.from_dict(nbformat.validator.normalize(nb, strip_invalid_metadata=True)[1])
        for cell in nb.cells:
            cell.setdefault("id", uuid.uuid4().hex[:8])
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.nbformat_minor = max(nb.nbformat_minor, 5)
        nbformat.validate(nb)
    except Exception as err:
        raise InvalidSubmission(f"not a valid notebook ({type(err).__name__}: {str(err)[:120]})") from None
    return nb


def _defines(source: str, name: str) -> bool:
    """Whether code defines `name` (def, class or assignment at the start of a line)."""
    return re.search(rf"^\s*(def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*=", source, re.M) is not None


def _words(text: str) -> str:
    return " ".join(text.split())


def check_assignment(nb: nbformat.NotebookNode, exercise: nbformat.NotebookNode,
                     answer_names: list[str], assignment: str) -> None:
    """InvalidSubmission unless `nb` defines one of the answers or shares a text cell with the exercise."""
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    if any(_defines(code, name) for name in answer_names):
        return
    texts = {_words(c.source) for c in exercise.cells if c.cell_type == "markdown" and c.source.strip()}
    if any(_words(c.source) in texts for c in nb.cells if c.cell_type == "markdown"):
        return
    raise InvalidSubmission(f"this is not assignment {assignment}: it defines none of "
                            f"{', '.join(answer_names)} and shares no text with exercises/{assignment}.ipynb")
