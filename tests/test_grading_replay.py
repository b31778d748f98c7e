"""Record and replay itself: what the student's code returns reaches the deciding side as plain data,
and the grader behaves there exactly as it did beside the real code."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from course_utils.checks import QUESTIONS, Mistake, grade, load_all, question
from course_utils.grading.replay import Diverged, Recorder, Replayer, record, replay

NO_TORCH = torch._C.DisableTorchFunction


class Net(nn.Module):
    """A student's module: submodules, a buffer-holding BatchNorm, a method of its own."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x):
        return self.bn(self.lin(x))

    def scale(self, k):
        return k * self.lin.weight.sum()


def use_net(session, node) -> list:
    """What a grader might do with a student's module class; returns everything it saw."""
    with NO_TORCH():
        cls = session.materialize(node)
    torch.manual_seed(0)
    net = cls()
    with torch.no_grad():
        net.lin.weight.fill_(0.5)
    net.double()
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    train_out = net(x)
    net.eval()
    seen = [cls.__name__, type(net).__name__, [n for n, _ in net.named_parameters()], train_out, net(x),
            net.bn.running_mean.clone(), net.scale(2.0), net.lin.in_features, torch.randn(2)]
    try:
        net(torch.zeros(2, 5, dtype=torch.float64))
    except RuntimeError as err:
        seen.append((type(err).__name__, str(err)[:40]))
    return seen


def round_trip(recorder: Recorder, node) -> tuple:
    """The recording as the deciding process reads it: torch.save, then torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save({"events": recorder.events, "node": node}, buffer)
    data = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    return Replayer(data["events"]), data["node"]


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def test_a_module_replays_its_outputs_state_methods_attributes_and_errors():
    recorder = Recorder()
    with NO_TORCH():
        node = recorder.describe(Net)
    live = use_net(recorder, node)
    replayer, node = round_trip(recorder, node)
    replayed = use_net(replayer, node)
    assert live[:3] == ["Net", "Net", ["lin.weight", "lin.bias", "bn.weight", "bn.bias"]]
    assert len(live) == len(replayed) == 10 and all(same(a, b) for a, b in zip(live, replayed))
    assert replayer.cursor == len(replayer.events)


def test_a_different_call_on_replay_is_a_divergence():
    recorder = Recorder()
    with NO_TORCH():
        f = recorder.materialize(recorder.describe(lambda n: n + 1))
    assert f(1) == 2
    replayer, _ = round_trip(recorder, None)
    with NO_TORCH():
        g = replayer.materialize({"~": "callable", "id": 0, "meta": {"type": "function", "repr": "f"}})
    with pytest.raises(Diverged, match="differs from the recorded one"):
        g(5)


def test_results_become_plain_data():
    class Sub(torch.Tensor):
        pass

    class Liar:
        def __eq__(self, other):
            return True

    class MyInt(int):
        def __eq__(self, other):
            return True

    returned = (torch.ones(2).as_subclass(Sub).requires_grad_(), np.arange(3), MyInt(3), Liar(), {"k": [1.5]})
    recorder = Recorder()
    with NO_TORCH():
        got = recorder.materialize(recorder.describe(lambda: returned))()
    assert type(got[0]) is torch.Tensor and not got[0].requires_grad
    assert isinstance(got[1], np.ndarray) and type(got[2]) is int and got[2] != 4
    assert type(got[3]).__name__ == "Liar" and got[3] != 1 and got[4] == {"k": [1.5]}


def test_a_recording_that_is_not_plain_data_is_refused():
    class Evil:
        def __reduce__(self):
            return print, ("this must never run in the deciding process",)

    bad = pickle.dumps({"answer": Evil(), "problem": None, "events": []}, protocol=2)
    result = replay("tempered_grad", bad)
    assert result.points == 0 and "could not be read" in result.message


def test_a_student_exception_keeps_its_class_message_and_catchability():
    def answer(z, y, T):
        raise KeyError("missing")

    result = replay("tempered_grad", record("tempered_grad", answer))
    assert result.points == 0 and result.message.startswith("your code raised KeyError: 'missing'")


@pytest.mark.parametrize("qid", sorted(load_all()))
def test_a_stub_gets_the_same_verdict_as_in_the_notebook_on_every_question(qid):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    replayed, direct = replay(qid, record(qid, stub)), grade(qid, stub)
    assert (replayed.points, replayed.attempted, replayed.message) == (direct.points, direct.attempted, direct.message)


@pytest.fixture
def partial_question():
    """A test-only question worth 2 points: 1 for the right values, 2 when they are also ints."""
    @question("tiny_square_partial", "00_tiny_replay", answer_name="square", points=2)
    def check_square(square):
        got = [square(x) for x in (0, 3, -2)]
        if got != [x * x for x in (0, 3, -2)]:
            raise Mistake(f"square returned {got}, expected [0, 9, 4].")
        if any(type(g) is not int for g in got):
            raise Mistake("square returned floats where ints are expected.", "keep the int: no float(...) around it.",
                          earned=1, credit="the right values")
        return "square is right on 3 cases."
    yield "tiny_square_partial"
    del QUESTIONS["tiny_square_partial"]


@pytest.mark.parametrize("square, state, points", [
    (lambda x: x * x, "pass", 2.0), (lambda x: float(x * x), "part", 1.0), (lambda x: 2 * x, "fail", 0.0)])
def test_partial_credit_survives_the_replay(partial_question, square, state, points):
    replayed, direct = replay(partial_question, record(partial_question, square)), grade(partial_question, square)
    assert (replayed.state, replayed.points, replayed.message) == (direct.state, direct.points, direct.message)
    assert (replayed.state, replayed.points) == (state, points)
    if state == "part":
        assert "Partial credit: 1 of 2 points for the right values." in replayed.message
