"""Instant feedback on exercises: `check(question_id, answer)` for every question of the course.

Each notebook's questions live in a submodule (`two_layer_cnn.py`, ...), registered with
`@question(...)`. A question's grader receives the student's answer and either returns a string
saying what it verified, or raises `Mistake(what_differed, hint)`. `check` turns everything
else (a stub's NotImplementedError, None, a crash or a wrong type inside the student's code)
into a message: it never raises, so the notebook runs on.

The grader (`course_utils.grade`) runs each grader twice: in a child process against a stand-in
that runs and records the student's code, then in the process that decides the points against
the recording (`course_utils.grading.replay`). So a grader reaches student code only by calling
the answer, the classes and objects it returns and their methods and attributes, and a module's
forward; it reads source text with `tools.source_of`, and computes its references from objects
the student's code never received.
"""
from __future__ import annotations

import importlib
import pkgutil
import traceback
from dataclasses import dataclass
from typing import Any, Callable

NOT_ATTEMPTED = "not attempted yet"


class Mistake(Exception):
    """Raised by a grader: `message` says what differed, `hint` what to look at."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint


@dataclass(frozen=True)
class Question:
    """A registered question: its notebook, points, the notebook name of the answer, its grader."""

    id: str
    notebook: str
    answer_name: str
    max_points: float
    grader: Callable[[Any], str]


@dataclass(frozen=True)
class CheckResult:
    """What `check` found: pass/fail, points out of max_points, and the message shown."""

    question: str
    passed: bool
    points: float
    max_points: float
    message: str
    attempted: bool = True


QUESTIONS: dict[str, Question] = {}


def question(qid: str, notebook: str, answer_name: str | None = None,
             points: float = 1.0) -> Callable[[Callable[[Any], str]], Callable[[Any], str]]:
    """Register the decorated grader as question `qid` of `notebook` (answer defined as `answer_name`)."""
    def register(grader: Callable[[Any], str]) -> Callable[[Any], str]:
        QUESTIONS[qid] = Question(qid, notebook, answer_name or qid, points, grader)
        return grader
    return register


def load_all() -> dict[str, Question]:
    """Import every checks submodule so that all questions are registered; return the registry."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return QUESTIONS


def questions_for(notebook: str) -> list[Question]:
    """The questions of one notebook (e.g. '03_two_layer_cnn'), in registration order."""
    return [q for q in load_all().values() if q.notebook == notebook]


def _student_frame(tb: traceback.StackSummary) -> str:
    """Where in the student's code an exception happened (the last frame outside course_utils)."""
    frames = [f for f in tb if "course_utils" not in f.filename]
    return f" (line {frames[-1].lineno}: {frames[-1].line})" if frames and frames[-1].line else ""


def grade(qid: str, answer: Any) -> CheckResult:
    """Grade `answer` for question `qid` without printing; never raises."""
    q = load_all().get(qid)
    if q is None:
        known = ", ".join(sorted(QUESTIONS))
        return CheckResult(qid, False, 0.0, 0.0, f"unknown question id {qid!r}; known ids: {known}")
    fail = lambda msg, attempted=True: CheckResult(qid, False, 0.0, q.max_points, msg, attempted)
    if answer is None or answer is Ellipsis:
        return fail(f"{NOT_ATTEMPTED}: `{q.answer_name}` is {answer!r}.", attempted=False)
    try:
        verified = q.grader(answer)
    except NotImplementedError:
        return fail(f"{NOT_ATTEMPTED}: replace `raise NotImplementedError()` in `{q.answer_name}` "
                    "with your code.", attempted=False)
    except Mistake as m:
        return fail(m.message + (f"\n   Hint: {m.hint}" if m.hint else ""))
    except (Exception, SystemExit) as err:
        where = getattr(err, "student_where", None)       # set on errors replayed by the grader
        where = where if isinstance(where, str) else _student_frame(traceback.extract_tb(err.__traceback__))
        return fail(f"your code raised {type(err).__name__}: {err}{where}")
    return CheckResult(qid, True, q.max_points, q.max_points, verified)


def check(qid: str, answer: Any) -> CheckResult:
    """Grade `answer` for question `qid`, print ✅/❌ with the message, and return the result."""
    result = grade(qid, answer)
    mark = "✅" if result.passed else ("⏳" if not result.attempted else "❌")
    print(f"{mark} [{qid}] {result.message}  ({result.points:g}/{result.max_points:g} points)")
    return result
