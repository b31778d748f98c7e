"""Finding the notebooks handed in and reading them safely, before any of their code runs."""
from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import nbformat

MAX_BYTES = 64 * 2**20


class InvalidSubmission(Exception):
    """The file handed in cannot be graded; the message says why, for the gradebook."""


@dataclass(frozen=True)
class Submission:
    """One hand-in: the student id, the notebook (None if its folder holds none), why not, its name
    in the hand-ins folder (folders end in '/'), its feedback folder's name, and the other hand-ins
    that claim the same id."""

    student: str
    path: Path | None
    problem: str = ""
    hand_in: str = ""
    folder: str = ""
    same_id: tuple[str, ...] = ()


def student_id(entry: Path) -> str:
    """The student id of a hand-in, exactly as given: `ID.ipynb` -> ID, a folder or other file -> its name."""
    return entry.stem if entry.is_file() and entry.suffix == ".ipynb" else entry.name


def folder_name(student: str) -> str:
    """A safe, reversible folder name for `student`: UTF-8 percent-encoded outside A-Z a-z 0-9 - . _
    (a leading '.' or '_' too, so that it is never hidden nor the grader's `_changed`)."""
    quoted = urllib.parse.quote(student, safe="-._")
    return f"%{ord(quoted[0]):02X}{quoted[1:]}" if quoted[:1] in (".", "_") else quoted


def student_of_folder(folder: str) -> str:
    """The student id a feedback folder belongs to (the inverse of `folder_name`)."""
    return urllib.parse.unquote(folder)


def _unique_ids(found: list[Submission]) -> list[Submission]:
    """Hand-ins claiming one id (`bob.ipynb` and `bob/`): a file keeps its full name as its id
    (`bob.ipynb`), a folder its name; any still equal get ' (2)', ' (3)'. Each names the others."""
    claims: dict[str, list[Submission]] = defaultdict(list)
    for sub in found:
        claims[sub.student].append(sub)
    renamed, seen = [], set()
    for sub in found:
        group = claims[sub.student]
        sid = sub.hand_in if len(group) > 1 and not sub.hand_in.endswith("/") else sub.student
        n, unique = 1, sid
        while unique in seen:
            n, unique = n + 1, f"{sid} ({n + 1})"
        seen.add(unique)
        renamed.append(Submission(unique, sub.path, sub.problem, sub.hand_in, folder_name(unique),
                                  tuple(o.hand_in for o in group if o is not sub)))
    return renamed


def discover(folder: Path, assignment: str) -> list[Submission]:
    """One Submission per entry of `folder`: `ID.ipynb` files, or `ID/` folders holding the notebook.

    Any other file is kept too (as a non-notebook), so that every student appears in the gradebook.
    Ids are the names as given (accents, spaces); hand-ins that claim the same id are all kept.
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
                found.append(Submission(student_id(entry), (named or notebooks)[0], hand_in=entry.name + "/"))
            else:
                why = "holds no .ipynb file" if not notebooks else \
                      f"holds {len(notebooks)} notebooks and none is named {assignment}.ipynb"
                found.append(Submission(student_id(entry), None, f"the folder {why}", hand_in=entry.name + "/"))
        else:
            found.append(Submission(student_id(entry), entry, hand_in=entry.name))
    return _unique_ids(found)


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
