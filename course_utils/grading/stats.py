"""Item analysis: per question, how many passed, got partial credit, failed or did not attempt it,
the mean points, how many asked for hints (and how many tiers) or revealed the answer, and the most
frequent mistakes.

Mistake messages are grouped after normalising what varies between students (numbers, memory
addresses, quoted values, line numbers), so that "square(3) returned 6, expected 9" and
"square(-2) returned -4, expected 4" count as one mistake. Students whose hand-in was not
graded (status `invalid`) are left out of the analysis and counted apart.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from course_utils.checks import NOT_ATTEMPTED

from .tables import MARKS, STATES, state_of, write_csv

TOP = 5
COLOURS = {"pass": "#2e7d32", "part": "#f9a825", "fail": "#c62828", "todo": "#9e9e9e"}
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w])")
ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+\b")
QUOTED = re.compile(r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"")


def normalise(message: str) -> str:
    """The mistake a message names, with student-specific values replaced by placeholders.

    Numbers become N, addresses 0x…, quoted strings '…'; whitespace is collapsed; a message that
    says the question was not attempted becomes just that.
    """
    text = " ".join(str(message).split())
    if text.startswith(NOT_ATTEMPTED):
        return NOT_ATTEMPTED
    text = ADDRESS.sub("0x…", text)
    text = QUOTED.sub("'…'", text)
    text = NUMBER.sub("N", text)
    return text[:300]


@dataclass
class QuestionStats:
    """One question's item analysis over the graded students."""

    question: str
    max_points: float
    states: Counter = field(default_factory=Counter)
    points: list[float] = field(default_factory=list)
    mistakes: Counter = field(default_factory=Counter)
    hinted: int = 0
    hint_tiers: int = 0
    revealed: int = 0

    @property
    def students(self) -> int:
        """Graded students."""
        return sum(self.states.values())

    @property
    def passed(self) -> int:
        """Students with full points (state pass)."""
        return self.states["pass"]

    @property
    def partial(self) -> int:
        """Students with partial credit (state part)."""
        return self.states["part"]

    @property
    def failed(self) -> int:
        """Students who attempted it and earned nothing (state fail)."""
        return self.states["fail"]

    @property
    def not_attempted(self) -> int:
        """Students who left it as the stub or None (state todo)."""
        return self.states["todo"]

    @property
    def pass_rate(self) -> float:
        """Fraction of graded students with full points."""
        return self.passed / self.students if self.students else 0.0

    @property
    def mean_points(self) -> float:
        return float(np.mean(self.points)) if self.points else 0.0


@dataclass
class ItemAnalysis:
    """The per-question statistics, the totals of graded students, and how many were not graded."""

    questions: list[QuestionStats]
    totals: list[float]
    max_total: float
    not_graded: int


def analyse(results: list[dict]) -> ItemAnalysis:
    """Item analysis of the grader's result dicts (student, status, total, max, questions {id: ...})."""
    graded = [r for r in results if r.get("status") != "invalid"]
    table: dict[str, QuestionStats] = {}
    for r in graded:
        for qid, q in r["questions"].items():
            s = table.setdefault(qid, QuestionStats(qid, float(q["max_points"])))
            state = state_of(q)
            s.states[state] += 1
            s.points.append(float(q["points"]))
            s.hinted += bool(q.get("hints"))
            s.hint_tiers += int(q.get("hints") or 0)
            s.revealed += bool(q.get("revealed"))
            if state != "pass":
                s.mistakes[NOT_ATTEMPTED if state == "todo" else normalise(str(q.get("message", "")))] += 1
    max_total = max((float(r["max"]) for r in results), default=0.0)
    return ItemAnalysis(list(table.values()), [float(r["total"]) for r in graded], max_total,
                        len(results) - len(graded))


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def markdown(a: ItemAnalysis, assignment: str, top: int = TOP) -> str:
    """The item analysis as a Markdown report (a table, then each question's frequent mistakes)."""
    n = len(a.totals)
    mean = float(np.mean(a.totals)) if a.totals else 0.0
    lines = [f"# {assignment}: item analysis", "",
             f"{n} graded students (mean total {mean:.2f} / {a.max_total:g})"
             + (f"; {a.not_graded} invalid hand-in(s), not graded, left out." if a.not_graded else "."), "",
             "| question | max | pass rate | mean points | pass | part | fail | todo | hinted (tiers) | revealed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in a.questions:
        lines.append(f"| `{s.question}` | {s.max_points:g} | {s.pass_rate:.0%} ({s.passed}/{s.students}) | "
                     f"{s.mean_points:.2f} | " + " | ".join(str(s.states[state]) for state in STATES)
                     + f" | {s.hinted} ({s.hint_tiers}) | {s.revealed} |")
    for s in a.questions:
        lines += ["", f"## `{s.question}`: most frequent mistakes", ""]
        if not s.mistakes:
            lines.append("Every graded student got full points.")
            continue
        lines += ["| students | mistake |", "|---|---|"]
        lines += [f"| {count} | {_cell(msg)} |" for msg, count in s.mistakes.most_common(top)]
    return "\n".join(lines) + "\n"


def figure(a: ItemAnalysis, assignment: str) -> Figure:
    """Two panels: each question's students by state (stacked bars: pass, part, fail, todo) and the
    histogram of total scores."""
    fig = Figure(figsize=(10, max(3.8, 1.2 + 0.32 * len(a.questions))), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    rows = a.questions[::-1]
    names = [s.question for s in rows]
    start = np.zeros(len(rows))
    for state in STATES:
        share = np.array([100 * s.states[state] / max(s.students, 1) for s in rows])
        left.barh(names, share, left=start, color=COLOURS[state], label=MARKS[state].split()[1].lower())
        start += share
    for y, s in enumerate(rows):
        left.text(1, y, f"{s.pass_rate:.0%}", va="center", color="white", fontsize=8)
    left.set_xlim(0, 100)
    left.set_xlabel("students (%)")
    left.set_title("result per question")
    left.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=len(STATES), frameon=False, fontsize=8)
    fractional = any(t != int(t) for t in a.totals)
    step = a.max_total / 20 if a.max_total > 20 else 0.5 if fractional else 1.0
    right.hist(a.totals, bins=np.arange(-step / 2, max(a.max_total, 1.0) + step, step),
               color="tab:green", edgecolor="white")
    right.set_xlabel(f"total points (max {a.max_total:g})")
    right.set_ylabel("students")
    right.set_title(f"total scores ({len(a.totals)} graded)")
    fig.suptitle(f"{assignment}: item analysis")
    return fig


def write_report(results: list[dict], assignment: str, prefix: Path, top: int = TOP) -> dict[str, Path]:
    """Write PREFIX.stats.md, .stats.csv, .mistakes.csv and .stats.png; return them by kind.

    For the gradebook `grades.csv`, pass prefix `grades` (the path without .csv).
    """
    a = analyse(results)
    prefix = Path(prefix)
    paths = {kind: prefix.with_name(f"{prefix.name}.{kind}") for kind in
             ("stats.md", "stats.csv", "mistakes.csv", "stats.png")}
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths["stats.md"].write_text(markdown(a, assignment, top), encoding="utf-8")
    write_csv(paths["stats.csv"], ["question", "max_points", "students", "passed", "pass_rate", "mean_points",
                                   "partly_right", "failed", "not_attempted", "hinted", "hint_tiers", "revealed"],
              [[s.question, f"{s.max_points:g}", s.students, s.passed, f"{s.pass_rate:.4f}",
                f"{s.mean_points:.4f}", s.partial, s.failed, s.not_attempted, s.hinted, s.hint_tiers, s.revealed]
               for s in a.questions])
    write_csv(paths["mistakes.csv"], ["question", "students", "mistake"],
              [[s.question, count, msg] for s in a.questions for msg, count in s.mistakes.most_common()])
    figure(a, assignment).savefig(paths["stats.png"], dpi=110)
    return paths
