"""Written answers: sheets to read per question, a CSV of scores to fill, and merging it back.

Convention: in the exercise notebook a written answer is a cell (usually Markdown) tagged
`written-answer` whose metadata names its question, `"written_question": "why_pooling"`, and
optionally its points, `"written_points": 2` (default 1). Its text is the placeholder the student
replaces. Jupyter keeps a cell's metadata when the student edits it, so the answer is found
wherever the cell moved. Every student gets a row for every written question: `answered`, `empty`
(blank or the placeholder left as it was), `deleted` (no cell with that question) or `no notebook`.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .tables import Gradebook, number, read_gradebook, write_csv, write_gradebook

TAG, QUESTION_KEY, POINTS_KEY = "written-answer", "written_question", "written_points"
PLACEHOLDER = "YOUR ANSWER HERE"
SCORE_COLUMNS = ["student", "question", "max_points", "state", "score", "comment"]


@dataclass(frozen=True)
class WrittenQuestion:
    """A written question of the exercise: id, points, the text before it, the placeholder."""

    id: str
    max_points: float
    prompt: str
    placeholder: str


@dataclass(frozen=True)
class Answer:
    """One student's answer to one written question and its state."""

    student: str
    question: str
    state: str          # answered, empty, deleted, no notebook
    text: str = ""


def _question_of(cell: nbformat.NotebookNode) -> str | None:
    """The written question id of `cell`, or None if it is not a written-answer cell."""
    meta = cell.get("metadata", {})
    tags = meta.get("tags", [])
    if not isinstance(tags, list) or TAG not in tags:
        return None
    qid = meta.get(QUESTION_KEY)
    return qid if isinstance(qid, str) and qid else None


def written_questions(exercise: nbformat.NotebookNode) -> list[WrittenQuestion]:
    """The written questions of an exercise notebook, in order; ValueError on a bad or repeated cell."""
    found: dict[str, WrittenQuestion] = {}
    for i, cell in enumerate(exercise.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if not isinstance(tags, list) or TAG not in tags:
            continue
        qid = _question_of(cell)
        if qid is None:
            raise ValueError(f"cell {i} of the exercise is tagged {TAG!r} but has no metadata "
                             f"{QUESTION_KEY!r} naming its question; add it (e.g. \"{QUESTION_KEY}\": \"q1\").")
        if qid in found:
            raise ValueError(f"two cells of the exercise are written answers to {qid!r}; give each its own id.")
        points = number(cell.metadata.get(POINTS_KEY, 1), f"{POINTS_KEY} of {qid!r}")
        before = next((c.source for c in reversed(exercise.cells[:i]) if c.cell_type == "markdown"), "")
        found[qid] = WrittenQuestion(qid, points, before.strip(), cell.source.strip())
    return list(found.values())


def answers_in(nb: nbformat.NotebookNode, student: str, questions: list[WrittenQuestion]) -> list[Answer]:
    """The student's answer to each written question (several cells for one question are joined)."""
    texts: dict[str, list[str]] = {}
    for cell in nb.cells:
        qid = _question_of(cell)
        if qid is not None:
            texts.setdefault(qid, []).append(cell.source.strip())
    out = []
    for q in questions:
        if q.id not in texts:
            out.append(Answer(student, q.id, "deleted"))
            continue
        parts = [t for t in texts[q.id] if t and t not in (q.placeholder, PLACEHOLDER)]
        out.append(Answer(student, q.id, "answered", "\n\n".join(parts)) if parts else Answer(student, q.id, "empty"))
    return out


def collect(notebooks: dict[str, Path | None], questions: list[WrittenQuestion]) -> list[Answer]:
    """Every student's answers; a missing or unreadable notebook gives `no notebook` rows."""
    answers = []
    for student in sorted(notebooks):
        path = notebooks[student]
        try:
            nb = nbformat.read(path, as_version=4) if path else None
        except Exception:               # a hand-in that is not a notebook: nothing to read
            nb = None
        answers += (answers_in(nb, student, questions) if nb is not None else
                    [Answer(student, q.id, "no notebook") for q in questions])
    return answers


def _quote(text: str) -> str:
    """Markdown text as a block quote (so that the student's headings stay inside their answer)."""
    return "\n".join("> " + line.replace("<", "&lt;") if line.strip() else ">" for line in text.splitlines())


def sheet(question: WrittenQuestion, answers: list[Answer], assignment: str) -> str:
    """The Markdown reading sheet of one question: the prompt, then each student's answer."""
    mine = [a for a in answers if a.question == question.id]
    unit = "point" if question.max_points == 1 else "points"
    lines = [f"# {assignment}: written answer `{question.id}` ({question.max_points:g} {unit})", "",
             _quote(question.prompt) if question.prompt else "", "",
             f"{sum(a.state == 'answered' for a in mine)} of {len(mine)} students answered.", ""]
    for a in mine:
        lines += [f"## {a.student}", ""]
        lines += [_quote(a.text) if a.state == "answered" else f"*({a.state})*", ""]
    return "\n".join(lines)


def export(answers: list[Answer], questions: list[WrittenQuestion], out_dir: Path,
           assignment: str) -> dict[str, Path]:
    """Write one `<question>.md` sheet per question and `scores.csv`; return the paths.

    Score cells start empty; scores and comments already entered in an existing scores.csv are kept
    (a re-run never erases marking), also for students no longer in the run.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for q in questions:
        paths[q.id] = out_dir / f"{q.id}.md"
        paths[q.id].write_text(sheet(q, answers, assignment), encoding="utf-8")
    points, order = {q.id: q.max_points for q in questions}, [q.id for q in questions]
    paths["scores"] = out_dir / "scores.csv"
    filled = _filled(paths["scores"])
    answers = sorted(answers, key=lambda a: (order.index(a.question), a.student))
    rows = [[a.student, a.question, f"{points[a.question]:g}", a.state,
             *filled.pop((a.student, a.question), ("", ""))] for a in answers]
    rows += [[s, q, "", "not in this run", *kept] for (s, q), kept in filled.items()]
    write_csv(paths["scores"], SCORE_COLUMNS, rows)
    return paths


def _filled(path: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """The score and comment already entered in a scores.csv, by (student, question); {} if none."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        return {(r["student"], r["question"]): (r.get("score") or "", r.get("comment") or "")
                for r in csv.DictReader(f) if (r.get("score") or r.get("comment")) and "student" in r}


def read_scores(path: Path, questions: list[WrittenQuestion], students: set[str],
                allow_unscored: bool = False) -> dict[tuple[str, str], float | None]:
    """The filled scores CSV as {(student, question): score}; ValueError listing every bad row.

    A blank score counts 0 for an answer that is empty, deleted or missing; for an answered one it
    is an error unless `allow_unscored` (then the cell stays blank and counts 0 in the total).
    """
    maxima = {q.id: q.max_points for q in questions}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"student", "question", "score"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path} has no column {', '.join(sorted(missing))}; fill in the scores.csv "
                             "that the written-answer export wrote, keeping its header.")
        scores: dict[tuple[str, str], float | None] = {}
        errors = []
        for line, r in enumerate(reader, start=2):
            student, qid, text = r["student"], r["question"], (r["score"] or "").strip()
            where = f"row {line} ({student!r}, {qid!r})"
            if student not in students:
                errors.append(f"{where}: no such student in the gradebook")
            elif qid not in maxima:
                errors.append(f"{where}: no written question {qid!r} (known: {', '.join(maxima)})")
            elif (student, qid) in scores:
                errors.append(f"{where}: scored twice")
            elif not text:
                if r.get("state", "answered") == "answered" and not allow_unscored:
                    errors.append(f"{where}: the answer has no score yet")
                scores[student, qid] = None if r.get("state", "answered") == "answered" else 0.0
            else:
                try:
                    value = number(text, "the score")
                except ValueError as err:
                    errors.append(f"{where}: {err}")
                    continue
                if not 0 <= value <= maxima[qid]:
                    errors.append(f"{where}: score {value:g} is outside 0..{maxima[qid]:g}")
                scores[student, qid] = value
    absent = [f"({s!r}, {q.id!r})" for s in sorted(students) for q in questions if (s, q.id) not in scores]
    if absent and not allow_unscored:
        errors.append(f"no row for {len(absent)} answers: {', '.join(absent[:5])}")
    if errors:
        more = f"\n... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise ValueError(f"{path}: {len(errors)} problem(s); fix them and merge again:\n" +
                         "\n".join(errors[:10]) + more)
    return scores


def merge(book: Gradebook, scores: dict[tuple[str, str], float | None],
          questions: list[WrittenQuestion]) -> Gradebook:
    """`book` with one column per written question (before `total`), totals and maxima updated.

    Merging again replaces the earlier written scores, so a corrected CSV can be merged twice.
    """
    new = [q for q in questions if q.id not in book.columns]
    at = 1 + len(book.questions)
    columns = book.columns[:at] + [q.id for q in new] + book.columns[at:]
    rows = []
    for r in book.rows:
        r = dict(r)
        total, maximum = number(r["total"], "total"), number(r["max"], "max")
        for q in questions:
            old = r.get(q.id, "")
            total -= number(old, q.id) if old else 0.0
            value = scores.get((r["student"], q.id))
            r[q.id] = "" if value is None else f"{value:g}"
            total += value or 0.0
        maximum += sum(q.max_points for q in new)
        r["total"], r["max"] = f"{total:g}", f"{maximum:g}"
        rows.append(r)
    return Gradebook(columns, rows)


Scores = dict[tuple[str, str], float | None]


def unmerge(book: Gradebook, questions: list[WrittenQuestion]) -> tuple[Gradebook, Scores]:
    """The inverse of `merge`: `book` without its written columns (totals and maxima as graded)
    and the written scores it held, to merge again after regrading."""
    present = [q for q in questions if q.id in book.columns]
    scores: Scores = {}
    rows = []
    for r in book.rows:
        r = dict(r)
        total, maximum = number(r["total"], "total"), number(r["max"], "max")
        for q in present:
            text = r.pop(q.id)
            value = number(text, f"{q.id} of {r['student']!r}") if text else None
            scores[r["student"], q.id] = value
            total, maximum = total - (value or 0.0), maximum - q.max_points
        r["total"], r["max"] = f"{total:g}", f"{maximum:g}"
        rows.append(r)
    return Gradebook([c for c in book.columns if c not in {q.id for q in present}], rows), scores


def registry_problems(questions: list[WrittenQuestion], registered: dict[str, float]) -> list[str]:
    """Where the exercise's written-answer cells and the written questions registered with
    `checks.written_question` (id -> points) disagree: a missing cell or registration, other points."""
    cells = {q.id: q.max_points for q in questions}
    problems = [f"written question {qid!r} is registered but the exercise has no cell tagged {TAG!r} for it"
                for qid in registered if qid not in cells]
    problems += [f"the exercise's written-answer cell {qid!r} is not registered with written_question(...)"
                 for qid in cells if qid not in registered]
    problems += [f"written question {qid!r} is worth {registered[qid]:g} points when registered but "
                 f"{points:g} in its cell's {POINTS_KEY!r}" for qid, points in cells.items()
                 if qid in registered and registered[qid] != points]
    return problems


def export_written(exercise: Path, notebooks: dict[str, Path | None], out_dir: Path,
                   assignment: str) -> dict[str, Path]:
    """Entry point: the written-answer sheets and scores.csv of a graded class ({} if none are written)."""
    questions = written_questions(nbformat.read(exercise, as_version=4))
    if not questions:
        return {}
    return export(collect(notebooks, questions), questions, out_dir, assignment)


def merge_written(gradebook: Path, filled: Path, exercise: Path, out: Path | None = None,
                  autograded: tuple[str, ...] = (), allow_unscored: bool = False) -> Gradebook:
    """Entry point: merge the filled scores CSV into the gradebook (in place unless `out`); return it.

    `autograded` are the checked questions' ids: a written question may not share one.
    """
    questions = written_questions(nbformat.read(exercise, as_version=4))
    if not questions:
        raise ValueError(f"{exercise} has no written-answer cells (tag {TAG!r}); nothing to merge.")
    if clash := sorted({q.id for q in questions} & set(autograded)):
        raise ValueError(f"written questions {clash} have the ids of checked questions; rename them in the exercise.")
    book = read_gradebook(gradebook)
    merged = merge(book, read_scores(filled, questions, set(book.by_student()), allow_unscored), questions)
    write_gradebook(out or gradebook, merged)
    return merged


def set_aside(gradebook: Path, exercise: Path) -> dict[tuple[str, str], float | None]:
    """Entry point before grading into an existing gradebook: take its merged written columns out
    (the file then has the grader's columns again) and return their scores for `put_back`."""
    questions = written_questions(nbformat.read(exercise, as_version=4))
    if not Path(gradebook).is_file() or not questions:
        return {}
    book = read_gradebook(gradebook)
    if not any(q.id in book.columns for q in questions):
        return {}
    bare, scores = unmerge(book, questions)
    write_gradebook(gradebook, bare)
    return scores


def put_back(gradebook: Path, exercise: Path, scores: dict[tuple[str, str], float | None]) -> None:
    """Entry point after grading: merge the scores `set_aside` returned into the gradebook again."""
    if not scores:
        return
    merged = {qid for _, qid in scores}
    questions = [q for q in written_questions(nbformat.read(exercise, as_version=4)) if q.id in merged]
    write_gradebook(gradebook, merge(read_gradebook(gradebook), scores, questions))
