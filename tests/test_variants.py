"""Per-student variants: each check draws its cases from a seed mixed with the student id.

The checks run here as in a notebook (`grade`); the grader's path (the hand-in's name reaching the
recording child and the deciding process) is tested in test_fresh_check.py.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_utils.checks import grade, set_student, student
from course_utils.checks.tools import variant_seed


@pytest.fixture(autouse=True)
def no_student():
    set_student("")
    yield
    set_student("")


def conv2d_loops(image, kernel, stride=1, padding=0):
    """A correct loop convolution (the solution's)."""
    k = kernel.shape[0]
    x = F.pad(image, (padding,) * 4)
    out_h, out_w = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    out = torch.zeros(out_h, out_w, dtype=image.dtype)
    for i in range(out_h):
        for j in range(out_w):
            out[i, j] = (x[i * stride:i * stride + k, j * stride:j * stride + k] * kernel).sum()
    return out


def calls_seen(qid: str, answer, student_id: str) -> list[tuple]:
    """The inputs `answer` receives from question `qid`'s check for `student_id` (and whether it passed)."""
    seen = []

    def spy(*args, **kwargs):
        seen.append(tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in [*args, *kwargs.values()]))
        return answer(*args, **kwargs)
    set_student(student_id)
    assert grade(qid, spy).passed
    return seen


def same_inputs(a: list[tuple], b: list[tuple]) -> bool:
    if len(a) != len(b):
        return False
    return all(len(x) == len(y) and all(
        torch.equal(u, v) if isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor) and u.shape == v.shape
        else (not isinstance(u, torch.Tensor) and u == v) for u, v in zip(x, y)) for x, y in zip(a, b))


def test_two_students_get_different_check_inputs_and_the_references_follow():
    alice, bob = calls_seen("conv2d_loops", conv2d_loops, "alice"), calls_seen("conv2d_loops", conv2d_loops, "bob")
    assert not same_inputs(alice, bob)
    assert {tuple(c[0].shape) for c in alice} != {tuple(c[0].shape) for c in bob}   # sizes vary, not only values
    assert same_inputs(alice, calls_seen("conv2d_loops", conv2d_loops, "alice"))    # stable for one student


def test_the_designed_edge_cases_stay_in_every_variant():
    for sid in ("", "alice", "bob"):
        specs = {(tuple(c[0].shape), tuple(c[1].shape), c[2], c[3]) for c in calls_seen("conv2d_loops", conv2d_loops, sid)}
        assert ((6, 7), (3, 3), 1, 0) in specs and ((9, 8), (3, 3), 2, 0) in specs   # a stride that does not divide
        assert ((5, 6), (1, 1), 1, 1) in specs                                       # a 1x1 kernel with padding


def test_an_answer_hard_coded_to_one_students_inputs_fails_for_another():
    table = {}
    for image, kernel, stride, padding in calls_seen("conv2d_loops", conv2d_loops, "alice"):
        table[(image.numpy().tobytes(), stride, padding)] = conv2d_loops(image, kernel, stride, padding).tolist()

    def hard_coded(image, kernel, stride=1, padding=0):
        key = (image.numpy().tobytes(), stride, padding)
        return torch.tensor(table[key], dtype=image.dtype) if key in table else torch.zeros(2, 2, dtype=image.dtype)
    set_student("alice")
    assert grade("conv2d_loops", hard_coded).passed
    set_student("bob")
    result = grade("conv2d_loops", hard_coded)
    assert not result.passed
    assert "conv2d_loops(image" in result.message and "student id 'bob'" in result.message   # the case, reproducible


def test_without_a_student_id_the_cases_are_the_common_ones():
    assert variant_seed(5) == 5
    set_student("alice")
    assert variant_seed(5) != 5 and variant_seed(5) != variant_seed(6)


def test_the_sheets_student_id_chooses_the_variant():
    namespace = {}
    exec("from course_utils.checks import check\nstudent_id = 'carol'\nresult = check('conv_parameters', 1216)",
         namespace)
    assert student() == "carol"
    with pytest.raises(TypeError, match="hand-in's name"):
        set_student(1234)
