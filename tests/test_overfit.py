"""Over-fitting checks: memorising a few digits (and the softmax bug that cannot), dropout removed, scored training,
and the gap verdict's guard and paired judgement."""
import math

import pytest
import torch
from torch import nn

from course_utils.data import MNISTData
from course_utils.model_cache import TrainConfig, build_model
from course_utils.models import TwoLayerCNN
from course_utils.overfit import Curves, Memorised, gap_verdict, memorise, train_scored, without_dropout
from course_utils.training import evaluate

CPU = torch.device("cpu")


def test_the_network_memorises_32_digits_and_a_softmax_before_the_loss_cannot(mnist):
    X, y = mnist.X_train[:32], mnist.y_train[:32]
    net = build_model(TrainConfig("TwoLayerCNN", seed=1))
    done = memorise(net, X, y, torch.optim.Adadelta(net.parameters(), lr=1.0), max_steps=100)
    assert done.reached and done.steps < 100 and done.loss < 0.01 and done.accuracy == 1
    net = build_model(TrainConfig("TwoLayerCNN", seed=1))
    optimizer = torch.optim.Adadelta(net.parameters(), lr=1.0)
    bug = memorise(nn.Sequential(net, nn.Softmax(dim=1)), X, y, optimizer, max_steps=10)
    assert not bug.reached and bug.steps == 10 and bug.loss > math.log(math.e + 9) - 1 - 1e-4   # the loss's floor
    assert "memorised all 32 digits" in done.sentence("net") and "NOT memorised after 10 steps" in bug.sentence("bug")


def test_memorised_sentence_states_the_numbers():
    assert Memorised(False, 100, 1.4921, 0.96875, 64).sentence("x") == (
        "x: NOT memorised after 100 steps (loss 1.492, accuracy 96.9 %): look for a bug before any long run.")


def test_without_dropout_keeps_the_weights_and_drops_nothing():
    torch.manual_seed(0)
    net, X = TwoLayerCNN(), torch.randn(8, 1, 28, 28)
    reference = net.eval()(X)
    stripped = without_dropout(net).train()
    assert not any(isinstance(m, nn.Dropout) for m in stripped.modules())
    assert torch.equal(stripped(X), reference) and torch.equal(stripped(X), stripped(X))   # training mode, no noise


def tiny_data(n_train: int = 6, n_val: int = 4) -> MNISTData:
    X = lambda n, start: torch.arange(start, start + n, dtype=torch.float32)[:, None, None, None].expand(n, 1, 28, 28)
    y = lambda n: torch.arange(n) % 10
    return MNISTData(X(n_train, 0), y(n_train), X(2, 100), y(2), "test digits", False, X(n_val, 50), y(n_val))


def test_train_scored_scores_both_splits_in_evaluation_mode_after_every_epoch(mnist):
    with pytest.raises(ValueError, match="with_validation"):
        train_scored(TwoLayerCNN(), mnist.subset(64, 10), None, 1, 32)
    data = mnist.with_validation().subset(128, 10, n_val=64)
    net = build_model(TrainConfig("TwoLayerCNN", seed=1))
    curves = train_scored(net, data, torch.optim.Adadelta(net.parameters(), lr=1.0), 2, 32, device=CPU)
    assert [len(v) for v in (curves.train_loss, curves.train_acc, curves.val_loss, curves.val_acc)] == [2, 2, 2, 2]
    assert curves.train_acc[-1] == evaluate(net, data.X_train, data.y_train)[1]        # eval mode: reproducible
    assert curves.val_loss[-1] == pytest.approx(evaluate(net, data.X_val, data.y_val)[0])
    assert curves.seconds > 0


class Lookup(nn.Module):
    """Logits looked up by the value of an image's first pixel (the digit's index in tiny_data)."""

    def __init__(self, right: set[int], labels: dict[int, int]):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.table = torch.zeros(500, 10)
        for index, label in labels.items():
            self.table[index, label if index in right else (label + 1) % 10] = 5.0

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.table[X[:, 0, 0, 0].long()] + 0 * self.dummy


def paired_runs(only_a: int, only_b: int, both: int = 100) -> tuple[dict, MNISTData]:
    """Two lookup 'networks' on shared validation digits: `both` right for both, then only-A and only-B digits."""
    n_val = both + only_a + only_b + 20
    data = tiny_data(n_train=10, n_val=n_val)
    labels = {int(v): int(t) for v, t in zip(data.X_val[:, 0, 0, 0], data.y_val)}
    labels |= {int(v): int(t) for v, t in zip(data.X_train[:, 0, 0, 0], data.y_train)}
    val = sorted(labels)[10:]
    a_right = set(range(10)) | set(val[:both + only_a])
    b_right = set(range(10)) | set(val[:both]) | set(val[both + only_a:both + only_a + only_b])
    curves = lambda right: Curves([0.01], [1.0], [0.5], [len(right & set(val)) / n_val])
    return {"plain": (Lookup(a_right, labels), curves(a_right)),
            "dropped": (Lookup(b_right, labels), curves(b_right))}, data


def test_gap_verdict_refuses_an_arm_that_did_not_train():
    runs, data = paired_runs(0, 30)
    model, _ = runs["plain"]
    runs["plain"] = (model, Curves([2.30], [0.11], [2.30], [0.10]))
    text = gap_verdict(runs, data)
    assert text.startswith("plain did not train under this budget") and "gap" not in text


def test_gap_verdict_judges_the_validation_side_paired():
    runs, data = paired_runs(only_a=0, only_b=30)
    text = gap_verdict(runs, data)
    assert "0 right only for plain and 30 only for dropped" in text
    assert text.splitlines()[-1].startswith("So dropped the gap changed by -") and "shown for these two" in text
    runs, data = paired_runs(only_a=3, only_b=5)
    assert gap_verdict(runs, data).endswith("a gain on unseen digits is not shown at this budget.")
