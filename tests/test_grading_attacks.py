"""Answers that attack the grading process: with record and replay they score nothing in the grader.

Each attack is a wrong answer that tries to change its own verdict. It is handed to the
grader's checker exactly as a notebook hands it over (a cloudpickle file), and graded by
`checker.grade_one`: a child runs the student's code, the test process (the deciding one) only
replays plain data. Where an attack does fool an in-process `grade` (run in a forked process, so
that its patches stay there), the test shows that too. Correct answers, taken from the solution
notebooks, keep their points beside the attacks.
"""
from __future__ import annotations

import ast
import builtins
import json
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cloudpickle
import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks import QUESTIONS, grade, load_all
from course_utils.checks.two_layer_cnn import cnn_reference
from course_utils.resnets import ResidualBlock
from course_utils.grading.checker import grade_one

ROOT = Path(__file__).resolve().parent.parent


def builds_a_transform(call: ast.Call) -> bool:
    """Whether `call` only constructs a torchvision transform (`transforms.RandomAffine(...)`): no data, no training."""
    return isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name) and call.func.value.id == "transforms"


def solution_answer(qid: str):
    """The answer to question `qid` as its solution notebook defines it (or None): the notebook's
    imports, functions, classes and assignments that call nothing but torchvision transforms (predictions,
    choices, an augmentation), executed in order (nothing that trains or loads data)."""
    q = load_all()[qid]
    path = ROOT / "solutions" / f"{q.notebook}.ipynb"
    if not path.is_file():
        return None
    namespace: dict = {}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:                    # IPython magics
            continue
        for node in tree.body:
            calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
            plain_value = isinstance(node, ast.Assign) and all(builds_a_transform(c) for c in calls)
            if plain_value or isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
                try:
                    exec(compile(ast.Module([node], type_ignores=[]), str(path), "exec"), namespace)
                except Exception:
                    pass
    return namespace.get(q.answer_name)


cloudpickle.register_pickle_by_value(sys.modules[__name__])      # by value, as a notebook's code is


@pytest.fixture(scope="module")
def checker():
    """A fresh single-threaded process that plays the grading process (it forks one child per answer)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def _grade_in_pool(qid: str, folder: str) -> dict:
    load_all()
    return grade_one(QUESTIONS[qid], Path(folder), timeout=60)


def _in_process_in_pool(qid: str, folder: str) -> float:
    import pickle
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            with open(Path(folder) / f"{load_all()[qid].answer_name}.pkl", "rb") as f:
                answer = pickle.load(f)
            os.write(write, str(grade(qid, answer).points).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return float(text)


def hand_over(qid: str, answer, folder: Path, source: str | None = None) -> str:
    """Write `answer` as the grader's cell in a notebook would: a cloudpickle file and a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    name = QUESTIONS[qid].answer_name if qid in QUESTIONS else qid
    with open(folder / f"{name}.pkl", "wb") as f:
        cloudpickle.dump(answer, f)
    sources = {} if source is None else {name: source}
    (folder / "manifest.json").write_text(json.dumps({"errors": {}, "defined": [], "sources": sources}))
    return str(folder)


def _grade_source_probe(folder: str) -> dict:
    """In the checker's process only: a question that reads the answer's source, graded."""
    from course_utils.checks import Mistake, question
    from course_utils.checks.tools import source_of

    @question("source_probe", "99_probe")
    def check_source_probe(answer) -> str:
        if "eval(" in source_of(answer):
            raise Mistake("the answer calls eval.")
        return f"returns {answer()!r} without eval."

    return grade_one(QUESTIONS["source_probe"], Path(folder), timeout=60)


def graded(checker, qid: str, answer, folder: Path) -> dict:
    """What the grader's checker gives `answer`."""
    return checker.submit(_grade_in_pool, qid, hand_over(qid, answer, folder)).result()


def in_process_points(checker, qid: str, answer, folder: Path) -> float:
    """Points from `grade` run in the process that loaded the answer (so the attack acts on it)."""
    return checker.submit(_in_process_in_pool, qid, hand_over(qid, answer, folder)).result()


# ---------- the attacks ----------

def _patch_everything() -> None:
    """Switch off every comparison the checks use, and make every verdict a pass."""
    import course_utils.checks as checks
    import course_utils.checks.tools as tools
    real = checks.CheckResult
    checks.CheckResult = lambda qid, passed, points, max_points, message, attempted=True: \
        real(qid, True, max_points, max_points, "all good", True)
    torch.allclose = lambda *a, **k: True
    torch.equal = lambda *a, **k: True
    torch.isfinite = lambda x: torch.ones_like(torch.as_tensor(x), dtype=torch.bool)
    np.allclose = lambda *a, **k: True
    tools.expect_close = lambda *a, **k: 0.0
    tools.expect_shape = lambda value, *a, **k: value


def patches_everything(*args, **kwargs):
    """A wrong answer of any kind (function or class): patches the grading process, returns rubbish."""
    _patch_everything()
    return torch.zeros(1)


def softmax_zeros_patched(z, *rest):
    """The issue's attack: zeros of the right shape, with torch.allclose, numpy.allclose, isfinite patched."""
    torch.allclose = lambda *a, **k: True
    np.allclose = lambda *a, **k: True
    torch.isfinite = lambda x: torch.ones_like(x, dtype=torch.bool)
    return torch.zeros_like(z)


class AlwaysClose(torch.Tensor):
    """A tensor subclass that answers True to allclose and equal."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal, torch.Tensor.allclose):
            return True
        return super().__torch_function__(func, types, args, kwargs)


def softmax_subclass(z, *rest):
    return torch.zeros_like(z).as_subclass(AlwaysClose)


class Liar:
    """An object equal to everything, different from nothing, an array of anything it is asked."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __array__(self, dtype=None, copy=None):
        return np.zeros(3)

    __hash__ = object.__hash__


def output_size_liar(n, kernel_size, stride=1, padding=0):
    return Liar()


def output_size_replaces_reference(n, kernel_size, stride=1, padding=0):
    """Replaces the reference the check compares with, then agrees with it."""
    import course_utils.checks.convolution as conv
    conv.output_size_reference = lambda *a, **k: 0
    return 0


def output_size_patches_builtins(n, kernel_size, stride=1, padding=0):
    """enumerate finds nothing, so the check sees no wrong case."""
    builtins.enumerate = lambda *a, **k: iter(())
    return -1


def weighted_step_replaces_reference(W, b, X, y, w, lr):
    """Replaces the loss the check computes after the call, then returns a step that does nothing."""
    import course_utils.checks.cross_entropy as ce
    ce.weighted_loss = lambda *a, **k: torch.tensor(0.0)
    return W.clone(), b.clone()


class LyingCNN(nn.Module):
    """The right parameters; its forward switches off the comparisons and returns zeros."""

    def __init__(self, in_channels, image_size):
        super().__init__()
        self.inner = cnn_reference(in_channels, image_size)

    def forward(self, x):
        self.inner(x)                          # its dropout layers run, as the check records them
        torch.allclose = lambda *a, **k: True
        torch.equal = lambda *a, **k: False
        return torch.zeros(len(x), 10)


def make_lying_cnn(in_channels, image_size):
    return LyingCNN(in_channels, image_size)


class LyingBlock(nn.Module):
    """The right parameters; its output is zeros in a tensor subclass that claims to be close."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.inner = ResidualBlock(c_in, c_out, stride)

    def forward(self, x):
        return torch.zeros_like(self.inner(x)).as_subclass(AlwaysClose)


def _patch_on_load():
    """Runs when the answer is unpickled: patches the grading process, hands over a wrong answer."""
    _patch_everything()
    return patches_everything


class PatchesWhenUnpickled:
    def __reduce__(self):
        return _patch_on_load, ()


# ---------- the tests ----------

@pytest.mark.parametrize("qid", sorted(load_all()))
def test_patching_the_grading_process_scores_nothing_on_every_question(checker, qid, tmp_path):
    """Patched when the answer is loaded (fools grade() on any question) or when it is called."""
    points = in_process_points(checker, qid, PatchesWhenUnpickled(), tmp_path / "in_process")
    assert points == QUESTIONS[qid].max_points                                   # it does fool grade()
    for when, attack in [("on_load", PatchesWhenUnpickled()), ("on_call", patches_everything)]:
        result = graded(checker, qid, attack, tmp_path / when)
        assert result["points"] == 0, (when, result)


@pytest.mark.parametrize("qid", sorted(load_all()))
def test_right_answers_keep_their_points(checker, qid, tmp_path):
    answer = solution_answer(qid)
    if answer is None:
        pytest.skip(f"no solution cell defines {QUESTIONS[qid].answer_name}")
    result = graded(checker, qid, answer, tmp_path / "right")
    assert result["points"] == QUESTIONS[qid].max_points, result
    assert result["message"] == grade(qid, answer).message       # the same message as check() gives


@pytest.mark.parametrize("qid, attack, fools_grade", [
    ("tempered_grad", softmax_zeros_patched, True),
    ("tempered_grad", softmax_subclass, True),
    ("weighted_step", weighted_step_replaces_reference, False),
    ("cnn_for_input", make_lying_cnn, True),
    ("residual_block", LyingBlock, True),
    ("output_size", output_size_liar, False),
    ("output_size", output_size_replaces_reference, False),
    ("output_size", output_size_patches_builtins, True),
])
def test_each_attack_scores_nothing(checker, qid, attack, fools_grade, tmp_path):
    if fools_grade:
        assert in_process_points(checker, qid, attack, tmp_path / "in_process") == QUESTIONS[qid].max_points
    result = graded(checker, qid, attack, tmp_path / "attack")
    assert result["points"] == 0, result


def test_an_attack_leaves_the_next_answer_alone(checker, tmp_path):
    """The deciding process replays the attack and then grades a right answer: full points."""
    assert graded(checker, "tempered_grad", patches_everything, tmp_path / "a")["points"] == 0
    result = graded(checker, "tempered_grad", solution_answer("tempered_grad"), tmp_path / "b")
    assert result["points"] == QUESTIONS["tempered_grad"].max_points


def test_a_stub_and_a_wrong_answer_get_the_usual_messages(checker, tmp_path):
    def stub(z, y, T):
        raise NotImplementedError()

    assert "not attempted" in graded(checker, "tempered_grad", stub, tmp_path / "stub")["message"]
    wrong = graded(checker, "tempered_grad", lambda z, y, T: (torch.softmax(z / T, dim=0) - F.one_hot(y, z.shape[1]))
                   / (len(y) * T), tmp_path / "axis")
    assert wrong["points"] == 0 and "normalises over the batch" in wrong["message"]


def test_a_grader_reads_the_source_the_notebook_had(checker, tmp_path):
    def clean():
        return 2

    def sneaky():
        return eval("1 + 1")

    for name, answer, source in [("clean", clean, "def clean():\n    return 2\n"),
                                 ("sneaky", sneaky, 'def sneaky():\n    return eval("1 + 1")\n')]:
        folder = hand_over("source_probe", answer, tmp_path / name, source)
        result = checker.submit(_grade_source_probe, folder).result()
        assert (result["points"], result["message"]) == ((1.0, "returns 2 without eval.") if name == "clean" else
                                                         (0.0, "the answer calls eval.")), result
