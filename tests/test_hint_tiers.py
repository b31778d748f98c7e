"""Hints teach without handing over the answer: every question's tiers, walked to the end with `hint`, stop
at where to look and what is wrong; the formula, the number, the letter or the code comes only from
`solution`.

The answer a tier must not contain is found from the question itself: a multiple-choice letter is the one
its grader accepts, a number or a shape is the one of the solution's numbers its grader accepts, and for code
and formulas any stretch of the solution's code (18 characters or more, with operators or brackets) counts.
The detector is checked too: put back as a last tier, every solution is caught.
"""
from __future__ import annotations

import re

import pytest

from course_utils.checks import _HINTS_SHOWN, _REVEALED, QUESTIONS, WRITTEN, grade, hint, load_all, solution

load_all()
ALL = [*QUESTIONS.values(), *WRITTEN.values()]
LETTERS = "abcdefgh"
CODE = set("()[]=*/+-<>√")
SHAPE = re.compile(r"\((\d+(?:, \d+){2,3})\)")
NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?![\d])|(?<![\w.])\d+(?:\.\d+)?(?![\w])")
SHORTEST_CODE = 18
SHORTEST_PROSE = 50


def squeeze(text: str) -> str:
    """`text` with whitespace collapsed, for comparisons that ignore line wrapping."""
    return " ".join(text.split())


def common_stretches(a: str, b: str, shortest: int) -> list[str]:
    """The maximal substrings of `a` that also occur in `b`, at least `shortest` characters long."""
    found, previous = set(), [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        row = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                row[j] = previous[j - 1] + 1
        for j in range(1, len(b) + 1):
            n = row[j]
            if n >= shortest and (i == len(a) or j == len(b) or a[i] != b[j]):
                found.add(a[i - n:i])
        previous = row
    return sorted(found, key=len, reverse=True)


def answer_letter(qid: str) -> str | None:
    """The letter the grader of a multiple-choice question accepts, or None if it takes no letter."""
    if QUESTIONS[qid].kind not in ("concept", "predict"):
        return None
    right = [letter for letter in LETTERS if grade(qid, letter).passed]
    return right[0] if len(right) == 1 else None


def answer_values(qid: str, reveal: str) -> list[str]:
    """How the reference number or shape is written: the solution's numbers (or shapes) the grader accepts."""
    if QUESTIONS[qid].kind not in ("concept", "predict"):
        return []
    forms = []
    for shape in SHAPE.findall(reveal):
        values = tuple(int(v) for v in shape.split(", "))
        if grade(qid, values).passed:
            forms += [", ".join(map(str, values)), ", ".join(map(str, values[-2:]))]
    for text in NUMBER.findall(reveal):
        value = float(text.replace(",", ""))
        answer = int(value) if value.is_integer() else value
        if grade(qid, answer).passed:
            forms += [text, f"{value:g}"] + ([f"{int(value):,}"] if value.is_integer() else [f"{value:.2f}"])
    return sorted(set(forms))


def leaks(q, tier: str) -> list[str]:
    """What of question `q`'s answer `tier` gives away (empty if nothing)."""
    tier, reveal = squeeze(tier), squeeze(q.reveal)
    found = []
    if q.kind == "written":
        return common_stretches(tier, reveal, SHORTEST_PROSE)
    letter = answer_letter(q.id)
    if letter and any(form in tier for form in (f"({letter})", f"'{letter}'", f"option {letter}")):
        found.append(f"the letter ({letter})")
    found += [f"the value {form}" for form in answer_values(q.id, reveal) if re.search(
        rf"(?<![\w.,]){re.escape(form)}(?![\w]|[.,]\d)", tier)]
    found += [s for s in common_stretches(tier, reveal, SHORTEST_CODE) if len(CODE & set(s)) >= 2]
    return found


def walk(qid: str) -> tuple[list[str], str]:
    """Every hint tier of `qid`, asked for one after the other as a student would, then its solution."""
    _HINTS_SHOWN.pop(qid, None)
    q = QUESTIONS.get(qid) or WRITTEN[qid]
    tiers = [str(hint(qid)) for _ in q.hints]
    return tiers, str(solution(qid))


@pytest.mark.parametrize("qid", [q.id for q in ALL])
def test_no_hint_tier_gives_the_answer_the_solution_does(qid, capsys):
    q = QUESTIONS.get(qid) or WRITTEN[qid]
    tiers, revealed = walk(qid)
    assert 2 <= len(q.hints) <= 3 and q.reveal, qid
    assert f"HINT {len(tiers)}/{len(tiers)}" in tiers[-1] and f"solution({qid!r})" in tiers[-1]
    assert "SOLUTION" in revealed and squeeze(q.reveal) in squeeze(revealed) and qid in _REVEALED
    for n, tier in enumerate(q.hints, 1):
        assert not leaks(q, tier), f"{qid}: tier {n} gives away {leaks(q, tier)}"


@pytest.mark.parametrize("qid", [q.id for q in ALL])
def test_the_detector_catches_each_solution_put_back_as_a_tier(qid):
    q = QUESTIONS.get(qid) or WRITTEN[qid]
    assert leaks(q, q.reveal), f"{qid}: nothing of the solution is recognised as the answer: {q.reveal}"


def test_multiple_choice_and_numeric_answers_are_found_from_the_graders():
    assert answer_letter("validation_choice") == "b" and answer_letter("positive_filter_choice") == "a"
    assert "14,528" in answer_values("block_parameters", QUESTIONS["block_parameters"].reveal)
    assert "8, 16, 15, 15" in answer_values("conv_output_shape", QUESTIONS["conv_output_shape"].reveal)
    assert leaks(QUESTIONS["initial_loss"], "the loss starts at 2.303 nats")
