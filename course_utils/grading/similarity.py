"""Similarity: pairs of students whose answer functions are near-identical once normalised.

Each answer function (a top-level `def` or `class` named like a question's answer) is parsed with
`ast`; docstrings are dropped, its own name, arguments and local names become v0, v1, ... in order
of first use, and `ast.unparse` rewrites it in one format (comments, blank lines and quoting
vanish). Two students' versions are compared as token streams with difflib's ratio (1.0 =
identical). The report lists pairs above a threshold for the instructor to read: a flag, never a
penalty. Short answers, the exercise's own stub, and forms that many students share (the natural
answer to a small question) are not flagged. Code that does not parse is skipped with a note.
"""
from __future__ import annotations

import ast
import builtins
import difflib
import io
import tokenize
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import nbformat

from .tables import write_csv

THRESHOLD, MIN_TOKENS, COMMON_SHARE = 0.9, 25, 0.2
KEEP = set(dir(builtins)) | {"self", "cls"}
GRADER_TAG = "cnn-course-grader"          # the cell the grader appends to executed notebooks


class _Canonical(ast.NodeTransformer):
    """Renames the names a function binds (its own, arguments, locals) to v0, v1, ...; drops docstrings."""

    def __init__(self, bound: set[str]):
        self.bound, self.names = bound, {}

    def _name(self, name: str) -> str:
        if name not in self.bound:
            return name
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._name(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg, node.annotation = self._name(node.arg), None
        return node

    def _body(self, node):
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    def visit_FunctionDef(self, node):
        node.name, node.returns = self._name(node.name), None
        self.generic_visit(self._body(node))
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        node.name = self._name(node.name)
        self.generic_visit(self._body(node))
        return node


def _bound_names(node: ast.AST) -> set[str]:
    """Names `node` binds: its own name, arguments, assigned, loop, with, except and inner def names."""
    bound = set()
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            bound.add(n.id)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
    return bound - KEEP


def normalise(node: ast.AST) -> str:
    """The canonical source of a function or class definition (see the module docstring)."""
    node = _Canonical(_bound_names(node)).visit(ast.parse(ast.unparse(node)).body[0])
    return ast.unparse(ast.fix_missing_locations(node))


def tokens(source: str) -> list[str]:
    """The token strings of normalised source (no comments, newlines or indentation tokens)."""
    skip = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER}
    return [t.string if t.type != tokenize.INDENT else "<indent>"
            for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in skip]


def _python(source: str) -> str:
    """A cell's source with IPython syntax (%magic, !shell) turned into Python."""
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager().transform_cell(source)


def functions(nb: nbformat.NotebookNode, names: set[str] | None) -> tuple[dict[str, list[str]], list[str]]:
    """The notebook's answer definitions {name: tokens} (the last one wins) and notes on skipped cells."""
    found, notes = {}, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip() or GRADER_TAG in cell.metadata.get("tags", []):
            continue
        try:
            tree = ast.parse(_python(cell.source))
        except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
            notes.append(f"cell {i} does not parse ({type(err).__name__}); skipped")
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                    (names is None or node.name in names):
                try:
                    found[node.name] = tokens(normalise(node))
                except (RecursionError, ValueError, SyntaxError, tokenize.TokenError) as err:
                    notes.append(f"`{node.name}` in cell {i} could not be normalised ({type(err).__name__})")
    return found, notes


@dataclass
class Pair:
    """Two students whose answers to some questions score at least the threshold."""

    a: str
    b: str
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return max(self.scores.values())


@dataclass
class Report:
    """Flagged pairs (highest first), forms shared by many students, and notes on skipped code."""

    pairs: list[Pair]
    common: dict[str, int]
    notes: dict[str, list[str]]
    students: int


def compare(answers: dict[str, dict[str, list[str]]], stubs: dict[str, list[str]] | None = None,
            threshold: float = THRESHOLD, min_tokens: int = MIN_TOKENS,
            common_share: float = COMMON_SHARE) -> tuple[list[Pair], dict[str, int]]:
    """Pairs of students with a per-question ratio >= threshold; also {question: students sharing
    its most common form} for forms held by more than `common_share` of the class (not flagged)."""
    pairs: dict[tuple[str, str], Pair] = {}
    common: dict[str, int] = {}
    questions = sorted({q for funcs in answers.values() for q in funcs})
    for q in questions:
        held = {s: funcs[q] for s, funcs in answers.items() if q in funcs and len(funcs[q]) >= min_tokens
                and funcs[q] != (stubs or {}).get(q)}
        counts = Counter(tuple(t) for t in held.values())
        crowd = {form for form, n in counts.items() if n > max(2, common_share * len(answers))}
        if crowd:
            common[q] = max(counts[f] for f in crowd)
        held = {s: t for s, t in held.items() if tuple(t) not in crowd}
        for a, b in combinations(sorted(held), 2):
            ratio = _ratio(held[a], held[b], threshold)
            if ratio >= threshold:
                pairs.setdefault((a, b), Pair(a, b)).scores[q] = ratio
    return sorted(pairs.values(), key=lambda p: (-p.score, p.a, p.b)), common


def _ratio(x: list[str], y: list[str], threshold: float) -> float:
    """difflib's ratio of two token lists, 0 as soon as its cheap upper bounds fall below `threshold`."""
    if x == y:
        return 1.0
    m = difflib.SequenceMatcher(None, x, y, autojunk=False)
    if m.real_quick_ratio() < threshold or m.quick_ratio() < threshold:
        return 0.0
    return m.ratio()


def markdown(report: Report, assignment: str, threshold: float) -> str:
    """The instructor's similarity report."""
    lines = [f"# {assignment}: similar answers", "",
             f"{report.students} notebooks compared; answer functions normalised with `ast` (names, comments, "
             f"docstrings, formatting) and compared token by token. Pairs with a ratio of at least {threshold:g} "
             "on some question are listed. **These are flags to read, not findings: short or guided answers "
             "converge, and no score is changed.**", ""]
    if report.pairs:
        lines += ["| student | student | highest | per question |", "|---|---|---|---|"]
        for p in report.pairs:
            per = ", ".join(f"`{q}` {s:.2f}" for q, s in sorted(p.scores.items()))
            lines.append(f"| {p.a} | {p.b} | {p.score:.2f} | {per} |")
    else:
        lines.append("No pair reached the threshold.")
    if report.common:
        lines += ["", "Not flagged, because many students wrote the same normalised answer: " +
                  ", ".join(f"`{q}` ({n} students)" for q, n in sorted(report.common.items())) + "."]
    if report.notes:
        lines += ["", "## Skipped code", ""]
        lines += [f"- {s}: {'; '.join(n)}" for s, n in sorted(report.notes.items())]
    return "\n".join(lines) + "\n"


def similarity_report(notebooks: dict[str, Path | None], answer_names: list[str] | None, prefix: Path,
                      assignment: str, exercise: Path | None = None,
                      threshold: float = THRESHOLD) -> Report:
    """Entry point: compare the students' notebooks; write PREFIX.similarity.md and .similarity.csv.

    `answer_names` are the functions to compare (None: every top-level definition); the `exercise`
    notebook's own stubs are never flagged.
    """
    names = set(answer_names) if answer_names else None
    answers, notes = {}, {}
    for student, path in sorted(notebooks.items()):
        if path is None:
            notes[student] = ["no notebook to compare"]
            continue
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as err:        # an unreadable hand-in: noted, not compared
            nb, notes[student] = None, [f"notebook not readable ({type(err).__name__})"]
        if nb is not None:
            answers[student], skipped = functions(nb, names)
            if skipped:
                notes[student] = skipped
    stubs = functions(nbformat.read(exercise, as_version=4), names)[0] if exercise else None
    pairs, common = compare(answers, stubs, threshold)
    report = Report(pairs, common, notes, len(answers))
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_name(f"{prefix.name}.similarity.md").write_text(markdown(report, assignment, threshold),
                                                                encoding="utf-8")
    write_csv(prefix.with_name(f"{prefix.name}.similarity.csv"), ["student_a", "student_b", "question", "ratio"],
              [[p.a, p.b, q, f"{s:.3f}"] for p in pairs for q, s in sorted(p.scores.items())])
    return report
