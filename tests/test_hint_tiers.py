"""Hints teach without handing over the answer: every question's tiers, walked to the end with `hint`, stop
at where to look and what is wrong; the formula, the number, the letter or the code comes only from
`solution`.

The answer a tier must not contain is found from the question itself: a multiple-choice letter is the one
its grader accepts, a number or a shape is the one of the solution's numbers its grader accepts, and for code
and formulas any stretch of the solution's code (18 characters or more, with operators or brackets) counts.
The detector is checked too: put back as a last tier, every solution is caught.
"""
from __future__ import annotations

import math
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
    assert "8,208" in answer_values("block_parameters", QUESTIONS["block_parameters"].reveal)
    assert "8, 16, 15, 15" in answer_values("conv_output_shape", QUESTIONS["conv_output_shape"].reveal)
    assert leaks(QUESTIONS["initial_loss"], "the loss starts at 2.303 nats")


def _wrong_answers() -> dict[str, tuple[list, list[str]]]:
    """For each predict or numeric concept question of notebooks 01, 02, 04 and 05: wrong answers reaching each
    failure path, and how its reference value is written where the solution does not hold it as a number."""
    from course_utils.checks import batch_size, cross_entropy, filters
    from course_utils.kernels import receptive_field
    c, h, w = filters._pool_shape(*filters._pool_input_size())
    index, size, _ = cross_entropy._push_truth("")
    other = (index + 1) % cross_entropy.PUSH_M
    n, epochs, big, small = batch_size._equal_images_case().values()
    steps = epochs * -(-n // small)
    beta, kalman = batch_size._ema_beta(), batch_size._kalman_case()
    window = kalman["batch_size"] / batch_size.steady_state_gain(kalman["q"], kalman["r"])
    kernel = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    return {
        "conv_output_shape": ([(16, 14, 14), (8, 3, 14, 14), (8, 16, 16, 16), (8, 16, 14, 14), (8, 16, 30, 30),
                               (8, 16, 14.5, 14.5), (1, 8, 16, 14, 14), (8, 16, 13, 13), (2, 3, 4, 5)], []),
        "impulse_response": ([kernel, [list(r) for r in zip(*kernel)], kernel[::-1], [r[::-1] for r in kernel],
                              [[5] * 3] * 3, [[0] * 3] * 3], ["9, 8, 7", "[[9"]),
        "conv_parameters": ([1200, 416, 400, 76, 256, 1203, 1000], []),
        "initial_loss": ([0.1, 1.0, math.log2(10), -math.log(10), 0, 10 * math.log(10), 5.0], []),
        "smoothed_floor": ([0.0, -math.log(0.91), -0.91 * math.log(0.91), math.log(10), 3.0], []),
        "largest_push": ([(other, size), (index, 2 * size), (index, size / 2), (index, 0.9)],
                         [f"{size:g}", f"{size:.3f}", f"{size:.4f}"]),
        "odd_pool_shape": ([(8, h, w), (c, w, h), (c, h + 1, w + 1), (c, h - 1, w - 1), (c, h), (c, 2 * h, w),
                            (h, w, c)], [f"{c}, {h}, {w}", f"{h}, {w}"]),
        "pool_receptive_field": ([5, 7, 8, 10, 12, 9, 3], [str(receptive_field([3, 3, 2], [1, 1, 2]))]),
        "positive_filter_choice": (["b", "c", "d"], []),
        "noise_ratio": ([16, 1, 0.25, 1 / 16, 2.0, 7.0, -1], []),
        "partial_batch_steps": ([*batch_size._partial_mistakes(n, epochs, big, small), steps + 7, 2],
                                [f"{steps}", f"{steps:,}"]),
        "adadelta_no_gap": (["a", "b", "c", "d", "e"], []),
        "ema_startup": ([*batch_size._startup_mistakes(beta), 3], [str(batch_size._startup_steps(beta))]),
        "kalman_window_images": ([*batch_size._kalman_mistakes(**kalman), 3.0],
                                 [f"{window:,.0f}", f"{window:.0f}", f"{window:g}"]),
    }


def test_a_wrong_prediction_or_numeric_answer_is_not_told_the_reference_value():
    """Failure feedback of a predict or numeric concept question diagnoses the mistake without the value."""
    for qid, (wrong, values) in _wrong_answers().items():
        q = QUESTIONS[qid]
        forms = values + answer_values(qid, squeeze(q.reveal))
        letter = answer_letter(qid)
        for answer in wrong:
            result = grade(qid, answer)
            assert not result.passed and result.attempted, (qid, answer, result.message)
            said = squeeze(" ".join(line for line in result.message.splitlines() if "Partial credit" not in line))
            own = [str(answer)] + ([f"{answer:g}"] if isinstance(answer, (int, float)) else [])
            for text in own:
                said = said.replace(text, "the answer")              # the student's own numbers aside
            found = [f for f in forms if re.search(rf"(?<![\w.,]){re.escape(f)}(?![\w]|[.,]\d)", said)]
            if letter:
                found += [form for form in (f"({letter})", f"option {letter}") if form in said]
            assert not found, f"{qid}: answer {answer!r} is told {found}: {result.message}"
