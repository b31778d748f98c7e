"""What a hand-in asked for while the student worked, and the instructor's policy for it.

`hint`, `solution` and `check` (course_utils.checks) write records into the notebook's outputs, under the
output metadata key `cnn_course`: the hint tiers shown, the answers revealed, the letters checked for a
multiple-choice question. Each record also carries everything its kernel had shown so far, so that a record
survives the deletion of an earlier cell. `read_usage` takes them from the hand-in as saved (never from the
grader's own run); `apply_policy` deducts the penalties and says so in each question's message.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from course_utils.checks import QUESTIONS, RECORD_KEY, grade, load_all

MC_POLICIES = {"first": "the first answer checked is graded", "last": "the answer handed in is graded"}


@dataclass
class Usage:
    """Hint tiers shown per question, the questions revealed, the multiple-choice answers checked in order."""

    hints: dict[str, int] = field(default_factory=dict)
    reveals: set[str] = field(default_factory=set)
    tries: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """Percent of a question's points deducted when its answer was revealed, and per hint tier shown; how
    multiple-choice tries are graded (one of MC_POLICIES)."""

    reveal_penalty: float = 100.0
    hint_penalty: float = 0.0
    mc: str = "first"

    def __post_init__(self):
        if not (0 <= self.reveal_penalty <= 100 and 0 <= self.hint_penalty <= 100):
            raise ValueError("penalties are percentages of a question's points: give numbers from 0 to 100.")
        if self.mc not in MC_POLICIES:
            raise ValueError(f"multiple-choice policy {self.mc!r} is not one of {', '.join(MC_POLICIES)}.")


def _merge(usage: Usage, record: dict) -> None:
    """Add one output's record (and the kernel's usage it carries) to `usage`, ignoring malformed parts."""
    seen = record.get("usage") if isinstance(record.get("usage"), dict) else {}
    hints = {**(seen.get("hints") if isinstance(seen.get("hints"), dict) else {})}
    if isinstance(record.get("hint"), str) and isinstance(record.get("tier"), int):
        hints[record["hint"]] = max(record["tier"], hints.get(record["hint"], 0))
    for qid, tier in hints.items():
        if isinstance(qid, str) and isinstance(tier, int) and tier > 0:
            usage.hints[qid] = max(tier, usage.hints.get(qid, 0))
    reveals = seen.get("reveals") if isinstance(seen.get("reveals"), list) else []
    usage.reveals.update(q for q in [*reveals, record.get("reveal")] if isinstance(q, str))
    tries = seen.get("tries") if isinstance(seen.get("tries"), dict) else {}
    for qid, answers in tries.items():
        if isinstance(answers, list) and all(isinstance(a, str) for a in answers):
            if len(answers) > len(usage.tries.get(qid, [])):
                usage.tries[qid] = answers[:20]


def read_usage(path: Path | None) -> Usage:
    """The usage recorded in the outputs of the notebook at `path` (empty if none, or if it is not a notebook)."""
    usage = Usage()
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"] if path else []
    except (OSError, ValueError, KeyError, TypeError):
        return usage
    for cell in cells if isinstance(cells, list) else []:
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        for out in outputs if isinstance(outputs, list) else []:
            meta = out.get("metadata") if isinstance(out, dict) else None
            record = meta.get(RECORD_KEY) if isinstance(meta, dict) else None
            if isinstance(record, dict):
                _merge(usage, record)
    return usage


def apply_policy(result: dict, usage: Usage, policy: Policy) -> dict:
    """`result` (a worker's) with each question's hints, reveal and multiple-choice first try recorded, the
    penalties deducted, its message saying why, and the total and the status message updated."""
    load_all()
    deducted, notes = 0.0, []
    for qid, q in result.get("questions", {}).items():
        points, top = float(q["points"]), float(q["max_points"])
        q["hints"], q["revealed"] = usage.hints.get(qid, 0), qid in usage.reveals
        why = []
        tries = usage.tries.get(qid)
        if policy.mc == "first" and tries and qid in QUESTIONS and points > 0:
            q["tries"] = tries
            first = grade(qid, tries[0])
            if first.points < points:
                points = first.points
                why.append(f"multiple choice: the first answer checked, {tries[0]!r}, is graded")
        cut = top * (policy.reveal_penalty / 100 * q["revealed"] + policy.hint_penalty / 100 * q["hints"])
        if q["revealed"]:
            why.append(f"answer revealed with solution() (-{policy.reveal_penalty:g} %)")
        if q["hints"] and policy.hint_penalty:
            why.append(f"{q['hints']} hint tier(s) (-{policy.hint_penalty:g} % each)")
        new = max(0.0, points - cut)
        if why:
            q["penalty"] = float(q["points"]) - new
            q["message"] = f"{q.get('message', '')} [{'; '.join(why)}: {new:g} of {float(q['points']):g} points kept]"
        deducted += float(q["points"]) - new
        q["points"] = new
        if q["points"] < top and q.get("state") == "pass":
            q["state"] = "part" if new > 0 else "fail"
    if usage.reveals:
        notes.append(f"revealed: {', '.join(sorted(usage.reveals))}")
    if usage.hints:
        notes.append("hints: " + ", ".join(f"{qid} ({n})" for qid, n in sorted(usage.hints.items())))
    result["total"] = max(0.0, float(result.get("total", 0.0)) - deducted)
    if notes:
        result["message"] = "; ".join([*notes, *([result["message"]] if result.get("message") else [])])
    return result
