"""Instant feedback on exercises: `check(question_id, answer)` for every question of the course.

Each notebook's questions live in a submodule (`two_layer_cnn.py`, ...), registered with
`@question(...)`. A question's grader receives the student's answer and either returns a string
saying what it verified, or raises `Mistake(what_differed, hint)` (with `earned=` for partial
credit). `check` turns everything else (a stub's NotImplementedError, None, a crash or a wrong
type inside the student's code) into a message: it never raises, so the notebook runs on. It
also reports the warnings the student's code raised while it was checked.

Written questions (`written_question(...)`) are graded by hand: their check says so, or, in
JupyterLab, that the saved notebook's answer cell still holds the placeholder. In a notebook,
`check_all()` prints every question of that notebook with its state, `hint(question_id)` gives
that question's hints one tier per call (where to look, then what is wrong) and `solution(question_id)` the
answer; all return values that Jupyter does not display again. Hints, revealed answers and the letters
checked for a multiple-choice question are written into the notebook's outputs (metadata `cnn_course`),
where the grader reads them (`course_utils.grading.usage`). `check(question_id)` without an answer
takes the answer from the notebook's names.
Printed messages wrap at word boundaries to `WIDTH` columns.

The grader (`course_utils.grade`) runs each grader twice: in a child process against a stand-in
that runs and records the student's code, then in the process that decides the points against
the recording (`course_utils.grading.replay`). So a grader reaches student code only by calling
the answer, the classes and objects it returns and their methods and attributes, and a module's
forward; it reads source text with `tools.source_of`, and computes its references from objects
the student's code never received.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import json
import os
import pkgutil
import re
import sysconfig
import textwrap
import traceback
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

NOT_ATTEMPTED = "not attempted yet"
NOT_DEFINED = "not defined yet"
WRITTEN_PLACEHOLDER = "YOUR ANSWER HERE"        # grading.written.PLACEHOLDER, without importing nbformat
WRITTEN_NOTE = "recorded for your instructor: graded by hand from the written-answer cell above"
UNSEEN_NOTE = ("recorded for your instructor and graded by hand if the written-answer cell above holds your answer: "
               "this check cannot open the notebook file here to see whether it still says YOUR ANSWER HERE")
NOT_ANSWERED = ("not answered yet: the saved notebook's answer cell above still says YOUR ANSWER HERE. Write your "
                "answer there, save (Ctrl+S) and run this check again.")
WIDTH = 100                                     # columns of a notebook's output at its default width
_MISSING = object()
MARKS = {"pass": "✅ PASS", "part": "🟡 PART", "fail": "❌ FAIL", "todo": "⏳ TODO", "written": "✍ WRITTEN"}
_LIBRARIES = tuple(sorted({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}))
_QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning)
KINDS = {"implement": "write a function or a module", "predict": "predict a value, then run the cell that measures it",
         "concept": "a numeric or multiple-choice question, each wrong option explained",
         "debug": "fix a short function that has real bugs", "backward": "a backward pass, checked against autograd",
         "challenge": "an open-ended target, checked on held-out data", "written": "a short written answer, graded by hand"}


class Mistake(Exception):
    """Raised by a grader: `message` says what differed, `hint` what to look at.

    `earned` > 0 gives partial credit (clamped to the question's points); `credit` says what earned it.
    """

    def __init__(self, message: str, hint: str = "", earned: float = 0.0, credit: str = ""):
        super().__init__(message)
        self.message, self.hint, self.earned, self.credit = message, hint, earned, credit


@dataclass(frozen=True)
class Question:
    """A registered question: its notebook, points, the notebook name of the answer, its grader, its
    hints, and `prepare`: what the grader loads (data), called once by the grading process before it grades."""

    id: str
    notebook: str
    answer_name: str
    max_points: float
    grader: Callable[[Any], str]
    hints: tuple[str, ...] = ()
    kind: str = "implement"
    prepare: Callable[[], object] | None = None
    reveal: str = ""


@dataclass(frozen=True)
class WrittenQuestion:
    """A question answered in a written-answer cell and graded by hand."""

    id: str
    notebook: str
    max_points: float
    hints: tuple[str, ...] = ()
    kind: str = "written"
    reveal: str = ""


@dataclass(frozen=True)
class CheckResult:
    """What `check` found: pass/fail, points out of max_points, and the message shown."""

    question: str
    passed: bool
    points: float
    max_points: float
    message: str
    attempted: bool = True
    written: bool = False

    @property
    def state(self) -> str:
        """One of pass, part, fail, todo, written."""
        if self.written:
            return "written"
        if not self.attempted:
            return "todo"
        return "pass" if self.passed else ("part" if self.points > 0 else "fail")

    def _ipython_display_(self) -> None:
        """Display nothing as a cell's value: check() has printed this result's line already."""

    @property
    def mark(self) -> str:
        """The emoji and the word shown for this state (the word for screens without emoji)."""
        return MARKS[self.state]


class Quiet(str):
    """A str that Jupyter does not display as a cell's value (it was printed already)."""

    def _ipython_display_(self) -> None:
        """Display nothing."""


class Results(list):
    """check_all's list of CheckResult, which Jupyter does not display as a cell's value (the table is printed)."""

    def _ipython_display_(self) -> None:
        """Display nothing."""


def wrap(text: str, width: int = WIDTH) -> str:
    """`text` with every line wrapped at word boundaries to `width` columns, continuations indented as the line."""
    lines = []
    for line in text.splitlines() or [""]:
        indent = re.match(r"\s*", line)[0] + "   "
        lines.append(textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False,
                                   break_on_hyphens=False) if len(line) > width else line)
    return "\n".join(lines)


COMMON_ERRORS = {
    "is invalid for input of size": "a reshape or view asked for a shape that holds a different number of values "
        "than the tensor has. Print the shape before it: after F.unfold there are as many patches as output "
        "pixels only when its kernel size, padding and stride are the convolution's (a forgotten stride= gives "
        "more).",
    "mat1 and mat2 shapes cannot be multiplied": "a matrix product or linear layer got inputs whose inner sizes "
        "differ. Before a linear layer flatten the map to (N, features), torch.flatten(x, 1) or nn.Flatten(), "
        "and check its in_features.",
    "must match the size of tensor": "two tensors combined element-wise have different shapes: print both shapes.",
    "Expected 3D (unbatched) or 4D (batched) input": "convolution and pooling layers take (N, C, H, W) images: "
        "add the batch and channel dimensions, e.g. image[None, None].",
}


def _common_cause(err: BaseException) -> str:
    """A hint for an error message that usually has one cause, or ''."""
    text = str(err)
    return next((hint for pattern, hint in COMMON_ERRORS.items() if pattern in text), "")


QUESTIONS: dict[str, Question] = {}
WRITTEN: dict[str, WrittenQuestion] = {}
_STUDENT = {"id": ""}             # whose variant the checks draw their cases for ('' for the sheet's own)


def set_student(student_id: str) -> None:
    """Draw every check's cases for `student_id` from now on (the hand-in's name; '' for the common cases)."""
    if not isinstance(student_id, str):
        raise TypeError(f"student_id should be a string, your hand-in's name, e.g. student_id = 's1234567'; "
                        f"got {type(student_id).__name__}.")
    _STUDENT["id"] = student_id.strip()


def student() -> str:
    """The student id whose cases the checks draw now ('' for the common cases)."""
    return _STUDENT["id"]


def _use_sheet_student(namespace: dict[str, Any]) -> None:
    """Take the sheet's `student_id` (if it set one) as the student whose cases the checks draw."""
    if isinstance(namespace.get("student_id"), str):
        set_student(namespace["student_id"])


def _variant_note() -> str:
    """How to see a failing check's cases again: the student id they were drawn for."""
    sid = student()
    return (f"\n   These cases were drawn for student id {sid!r}: with student_id = {sid!r} in the sheet, "
            "check() draws the same ones." if sid else "")
_HINTS_SHOWN: dict[str, int] = {}
_REVEALED: set[str] = set()
_TRIES: dict[str, list[str]] = {}
RECORD_KEY = "cnn_course"                       # the output metadata key of hint, solution and check records


def question(qid: str, notebook: str, answer_name: str | None = None, points: float = 1.0,
             hints: tuple[str, ...] = (), kind: str = "implement",
             prepare: Callable[[], object] | None = None,
             reveal: str = "") -> Callable[[Callable[[Any], str]], Callable[[Any], str]]:
    """Register the decorated grader as question `qid` of `notebook` (answer defined as `answer_name`).

    `hints` are shown one per `hint(qid)` call: where to look first, then what is wrong, never the answer;
    `reveal` (the formula, the number, the letter or the code) only through `solution(qid)`.
    `kind` is one of KINDS. `prepare` (a cached loader the grader calls) lets the grading process
    load it once for every recording of the answer.
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} of {qid!r} is not one of {', '.join(KINDS)}")

    def register(grader: Callable[[Any], str]) -> Callable[[Any], str]:
        QUESTIONS[qid] = Question(qid, notebook, answer_name or qid, points, grader, tuple(hints), kind, prepare,
                                  reveal)
        return grader
    return register


def written_question(qid: str, notebook: str, points: float = 1.0, hints: tuple[str, ...] = (),
                     reveal: str = "") -> None:
    """Register `qid` as a written question of `notebook` (its cell is tagged written-answer); `reveal` is
    what a full answer says, shown by `solution(qid)`."""
    WRITTEN[qid] = WrittenQuestion(qid, notebook, points, tuple(hints), reveal=reveal)


def load_all() -> dict[str, Question]:
    """Import every checks submodule so that all questions are registered; return the registry."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return QUESTIONS


def questions_for(notebook: str) -> list[Question]:
    """The questions of one notebook (e.g. '03_two_layer_cnn'), in registration order."""
    return [q for q in load_all().values() if q.notebook == notebook]


def written_for(notebook: str) -> list[WrittenQuestion]:
    """The written questions of one notebook, in registration order."""
    load_all()
    return [w for w in WRITTEN.values() if w.notebook == notebook]


def _is_student_file(filename: str) -> bool:
    """Whether a traceback frame's file is the student's (not course_utils, not a library)."""
    return ("course_utils" not in Path(filename).parts and not filename.startswith(_LIBRARIES)
            and not filename.startswith("<frozen"))


def _library_of(filename: str) -> str:
    """A short name for where a library frame lives: 'torch', 'numpy', 'the check'."""
    parts = Path(filename).parts
    if "course_utils" in parts:
        return "the check"
    for marker in ("site-packages", "dist-packages"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1].removesuffix(".py")
    return "Python's standard library"


def _student_frame(tb: traceback.StackSummary) -> str:
    """Where in the student's code an exception happened: their last line, and the library it went into."""
    frames = [f for f in tb if _is_student_file(f.filename)]
    if not frames or not frames[-1].line:
        return ""
    inside = "" if _is_student_file(tb[-1].filename) else f"raised inside {_library_of(tb[-1].filename)}, "
    return f" ({inside}from your line {frames[-1].lineno}: {frames[-1].line})"


def _warning_advice(w: warnings.WarningMessage) -> str:
    """What to change for a warning the student's code raised while it was checked."""
    text = str(w.message)
    if "requires_grad" in text and "scalar" in text:
        return "return a plain Python number: loss.item(), not the loss tensor."
    if "overflow" in text or "invalid value" in text:
        return "a value overflowed: look for exp() or a division by zero."
    if "deprecated" in text.lower():
        return "use the replacement the warning names."
    return "it does not change the points, but fix what it says."


def _warnings_note(caught: list[warnings.WarningMessage]) -> str:
    """One line per distinct warning: its category, text and what to change."""
    seen = []
    for w in caught:
        line = f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}"
        if not issubclass(w.category, _QUIET_WARNINGS) and line not in [s for s, _ in seen]:
            seen.append((line, _warning_advice(w)))
    return "".join(f"\n   Warning while your code ran: {line}. Change: {advice}" for line, advice in seen[:3])


def _run_grader(q: Question, answer: Any) -> CheckResult:
    """Run q's grader on `answer` and turn whatever happens into a CheckResult."""
    fail = lambda msg, attempted=True, points=0.0: CheckResult(q.id, False, points, q.max_points, msg, attempted)
    try:
        verified = q.grader(answer)
    except NotImplementedError:
        return fail(f"{NOT_ATTEMPTED}: replace `raise NotImplementedError()` in `{q.answer_name}` "
                    "with your code.", attempted=False)
    except Mistake as m:
        earned = min(max(float(m.earned), 0.0), q.max_points) if m.earned else 0.0
        reason = f" for {m.credit}." if m.credit else "."
        credit = f"\n   Partial credit: {earned:g} of {q.max_points:g} points{reason}" if earned else ""
        return fail(m.message + (f"\n   Hint: {m.hint}" if m.hint else "") + credit + _variant_note(),
                    points=earned)
    except (Exception, SystemExit) as err:
        where = getattr(err, "student_where", None)       # set on errors replayed by the grader
        where = where if isinstance(where, str) else _student_frame(traceback.extract_tb(err.__traceback__))
        called = getattr(err, "student_call", None)       # set by tools.calling around a call into student code
        called = f"\n   Called as: {called}." if isinstance(called, str) else ""
        cause = _common_cause(err)
        return fail(f"your code raised {type(err).__name__}: {err}{where}{called}"
                    + (f"\n   Hint: {cause}" if cause else ""))
    return CheckResult(q.id, True, q.max_points, q.max_points, verified)


def _saved_written_answer(qid: str) -> str | None:
    """'answered', 'empty' or 'no cell' for written question `qid` in the notebook JupyterLab opened this
    kernel for (as last saved); None where that notebook is unknown (papermill, the grader, a console)."""
    path = os.environ.get("JPY_SESSION_NAME", "")
    if not path.endswith(".ipynb") or not os.path.isfile(path):
        return None
    try:                                      # plain JSON: nbformat takes seconds to import
        cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
        texts = ["".join(c["source"]).strip() for c in cells if c.get("metadata", {}).get("written_question") == qid]
    except (OSError, ValueError, KeyError, TypeError):    # a notebook being written, or not one: say nothing
        return None
    if not texts:
        return "no cell"
    return "answered" if any(t and t != WRITTEN_PLACEHOLDER for t in texts) else "empty"


def _written_result(qid: str) -> CheckResult:
    """The check of a written question: recorded for the instructor, or not answered yet."""
    state = _saved_written_answer(qid)
    no_cell = (f"{NOT_ANSWERED.split(':')[0]}: the saved notebook has no written-answer cell for {qid!r} "
               "(deleted?); get it back from a fresh copy of the sheet.")
    message = {"empty": NOT_ANSWERED, "no cell": no_cell, None: UNSEEN_NOTE}.get(state, WRITTEN_NOTE)
    return CheckResult(qid, False, 0.0, WRITTEN[qid].max_points, message, written=True)


def _unknown(qid: str, namespace: dict[str, Any] | None = None) -> str:
    """The message for an unknown question id: the nearest id, and the ids of this sheet (or of all sheets)."""
    every = sorted([*QUESTIONS, *WRITTEN])
    near = difflib.get_close_matches(qid, every, n=1, cutoff=0.6)
    try:
        notebook = _notebook_of(namespace) if namespace else None
    except ValueError:                        # no answer defined yet: the notebook JupyterLab opened, if a sheet
        stem = Path(os.environ.get("JPY_SESSION_NAME", "")).stem
        notebook = stem if any(q.notebook == stem for q in QUESTIONS.values()) else None
    listed = ([q.id for q in questions_for(notebook)] + [w.id for w in written_for(notebook)]) if notebook else every
    where = f"this sheet's ids ({notebook})" if notebook else "known ids"
    guess = f" Did you mean {near[0]!r}?" if near else ""
    return f"unknown question id {qid!r}.{guess} {where.capitalize()}: {', '.join(listed)}."


def grade(qid: str, answer: Any) -> CheckResult:
    """Grade `answer` for question `qid` without printing; never raises."""
    q = load_all().get(qid)
    if q is None:
        if qid in WRITTEN:
            return _written_result(qid)
        return CheckResult(qid, False, 0.0, 0.0, _unknown(qid))
    if answer is None or answer is Ellipsis:
        return CheckResult(qid, False, 0.0, q.max_points, f"{NOT_ATTEMPTED}: `{q.answer_name}` is {answer!r}.",
                           attempted=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _run_grader(q, answer)
    note = _warnings_note(caught) if result.attempted else ""
    return replace(result, message=result.message + note) if note else result


def _show(result: CheckResult) -> None:
    """Print one check line: mark and word, question id, message, points; wrapped to WIDTH."""
    points = "" if result.written else f"  ({result.points:g}/{result.max_points:g} points)"
    print(wrap(f"{result.mark} [{result.question}] {result.message}{points}"))


def check(qid: str, answer: Any = _MISSING) -> CheckResult:
    """Grade `answer` for question `qid`, print the mark with the message, and return the result.

    Without `answer`, the answer is the notebook's name for it (e.g. `output_size`), if defined."""
    namespace = inspect.currentframe().f_back.f_globals
    _use_sheet_student(namespace)
    q = load_all().get(qid)
    if q is None and qid not in WRITTEN:
        result = CheckResult(qid, False, 0.0, 0.0, _unknown(qid, namespace))
    elif answer is not _MISSING:
        result = grade(qid, answer)
    elif q is not None and q.answer_name not in namespace:
        result = CheckResult(qid, False, 0.0, q.max_points, f"{NOT_DEFINED}: this notebook has no `{q.answer_name}`. "
                             f"Run the cell that defines it first (or pass it: check({qid!r}, {q.answer_name})).",
                             attempted=False)
    else:
        answer = namespace[q.answer_name] if q is not None else None
        result = grade(qid, answer)
    _show(result)
    if q is not None and result.attempted and answer is not _MISSING and _record_try(q, answer):
        _emit("", {"check": qid})
    return result


def _notebook_of(namespace: dict[str, Any]) -> str:
    """The notebook whose answer names `namespace` defines most of (the sheet check_all runs in)."""
    notebooks = sorted({q.notebook for q in load_all().values()})
    defined = {nb: sum(q.answer_name in namespace for q in questions_for(nb)) for nb in notebooks}
    best = max(defined.values(), default=0)
    found = [nb for nb, n in defined.items() if n == best]
    if best == 0 or len(found) > 1:
        raise ValueError(f"check_all() cannot tell which notebook this is; name it: check_all({notebooks[0]!r}). "
                         f"Notebooks: {', '.join(notebooks)}.")
    return found[0]


def check_all(notebook: str | None = None, namespace: dict[str, Any] | None = None,
              fresh: bool | str = False) -> Results:
    """Check every question of a notebook from the names defined in it, and print a table with the total.

    Run it as the last cell of an exercise sheet: `notebook` and `namespace` default to the sheet's.
    It returns the list of CheckResult, which Jupyter does not display under the table. With
    `fresh=True` (or the saved notebook's path) it then runs the saved notebook through the grader
    (`course_utils.grading.fresh`) and names each question whose verdict there differs, and why.
    """
    if namespace is None:
        namespace = inspect.currentframe().f_back.f_globals
    _use_sheet_student(namespace)
    notebook = notebook or _notebook_of(namespace)
    if fresh:
        from course_utils.grading.fresh import fresh_check     # the grader's imports: only when asked
        live = check_all(notebook, namespace)
        fresh_check(notebook, live, namespace, None if fresh is True else fresh)
        return live
    results = Results(grade(q.id, namespace.get(q.answer_name)) for q in questions_for(notebook))
    results += [grade(w.id, None) for w in written_for(notebook)]
    width = max(len(r.question) for r in results)
    print(f"{notebook}: {len(results)} questions\n")
    for r in results:
        points = "   by hand" if r.written else f"{r.points:>4g}/{r.max_points:<4g}"
        row = f"{r.mark:<10} {r.question:<{width}}  {points}  "
        first, room = r.message.splitlines()[0], max(WIDTH - len(row), 30)
        first = first if len(first) <= room else first[:room - 1].rsplit(" ", 1)[0] + " …"
        print(row + first)
    auto = [r for r in results if not r.written]
    counts = {s: sum(r.state == s for r in results) for s in MARKS}
    print(wrap(f"\n{sum(r.points for r in auto):g} of {sum(r.max_points for r in auto):g} automatic points; "
               + ", ".join(f"{n} {MARKS[s].split()[1].lower()}" for s, n in counts.items() if n)
               + "; written answers are graded by hand."))
    return results


def _usage() -> dict:
    """What this kernel has shown and tried so far: hint tiers, revealed answers, multiple-choice tries."""
    return {"hints": dict(_HINTS_SHOWN), "reveals": sorted(_REVEALED), "tries": {q: list(t) for q, t in _TRIES.items()}}


def _emit(text: str, record: dict) -> None:
    """Print `text` (if any); in a Jupyter kernel, with `record` given, add an empty output whose metadata holds
    `record` and this kernel's usage, so that the saved notebook keeps it (the grader reads it from the hand-in)."""
    if text:
        print(text)
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        shell = None
    if record and shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import display
        display({"text/plain": ""}, raw=True, metadata={RECORD_KEY: {**record, "usage": _usage()}})


def _record_try(q: Question, answer: Any) -> bool:
    """Keep a multiple-choice answer (a string) checked for `q`, for the grader's multiple-choice policy;
    whether it is one."""
    if q.kind not in ("concept", "predict") or not isinstance(answer, str):
        return False
    tries = _TRIES.setdefault(q.id, [])
    if not tries or tries[-1] != answer:
        tries.append(answer)
    return True


def hint(qid: str) -> Quiet:
    """Print the next hint for question `qid` (one more tier per call) and return it (Jupyter shows it once).

    Hints say where to look and what is wrong; `solution(qid)` shows the answer. The saved notebook records
    the tiers shown, which the grader reads (the instructor may deduct points for them)."""
    load_all()
    q = QUESTIONS.get(qid) or WRITTEN.get(qid)
    record: dict = {}
    if q is None:
        text = _unknown(qid, inspect.currentframe().f_back.f_globals)
    elif not q.hints:
        text = f"[{qid}] has no hints: read the exercise text again, then run its check."
    else:
        shown = _HINTS_SHOWN[qid] = min(_HINTS_SHOWN.get(qid, 0) + 1, len(q.hints))
        last = (f"  (that is the last hint; solution({qid!r}) shows the answer, which your instructor sees)"
                if shown == len(q.hints) else f"  (call hint({qid!r}) again for more)")
        text = f"💡 HINT {shown}/{len(q.hints)} [{qid}] {q.hints[shown - 1]}{last}"
        record = {"hint": qid, "tier": shown}
    _emit(wrap(text), record)
    return Quiet(text)


def solution(qid: str) -> Quiet:
    """Print the answer of question `qid` (the formula, the number, the letter or the code) and return it.

    The saved notebook records that it was revealed: the grader reads it, the gradebook and the feedback show
    it, and by default the question then earns no points."""
    load_all()
    q = QUESTIONS.get(qid) or WRITTEN.get(qid)
    record: dict = {}
    if q is None:
        text = _unknown(qid, inspect.currentframe().f_back.f_globals)
    elif not q.reveal:
        text = f"[{qid}] has no answer to reveal: ask your instructor."
    else:
        _REVEALED.add(qid)
        text = f"🔓 SOLUTION [{qid}] {q.reveal}  (recorded in this notebook: your instructor sees it was revealed)"
        record = {"reveal": qid}
    _emit(wrap(text), record)
    return Quiet(text)
