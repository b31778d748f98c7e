"""The check entry point and the questions of notebook 03: right answers pass, mistakes get their message."""
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks import NOT_ATTEMPTED, check, grade, questions_for
from course_utils.checks.two_layer_cnn import flat_features_reference, train_step_reference
from course_utils.models import TwoLayerCNN


def sequential_cnn(final=None, dropout=True) -> nn.Sequential:
    layers = [nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
              nn.Dropout(0.25 if dropout else 0.0), nn.Flatten(), nn.Linear(2304, 64), nn.ReLU(),
              nn.Dropout(0.5 if dropout else 0.0), nn.Linear(64, 10)]
    return nn.Sequential(*layers, *([final] if final else []))


def test_questions_of_notebook_03_are_registered():
    assert [q.id for q in questions_for("03_two_layer_cnn")] == ["flat_features", "make_two_layer_cnn", "train_step"]


@pytest.mark.parametrize("answer", [
    flat_features_reference,
    lambda n, k, p, c: c * ((n - k + 1 - k + 1) // p) ** 2,
])
def test_flat_features_accepts_equivalent_formulas(answer):
    assert grade("flat_features", answer).passed


@pytest.mark.parametrize("answer, hint", [
    (lambda n, k, p, c: c * (n - 2 * (k - 1)) ** 2, "forgot the max-pool"),
    (lambda n, k, p, c: ((n - 2 * (k - 1)) // p) ** 2, "number of channels"),
    (lambda n, k, p, c: c * ((n - k + 1) // p) ** 2, "two convolutions"),
    (lambda n, k, p, c: c * ((n - 2 * k) // p) ** 2, "not n - k"),
    (lambda n, k, p, c: 2304, "instead of returning a fixed number"),
    (lambda n, k, p, c: c * (n - 2 * k + 2) // p, "trace the side length"),
])
def test_flat_features_mistakes_get_their_hint(answer, hint):
    result = grade("flat_features", answer)
    assert not result.passed and result.points == 0 and hint in result.message


@pytest.mark.parametrize("answer", [TwoLayerCNN, sequential_cnn])
def test_model_check_accepts_class_and_sequential(answer):
    result = grade("make_two_layer_cnn", answer)
    assert result.passed and result.points == result.max_points == 2


@pytest.mark.parametrize("answer, fragment", [
    (lambda: sequential_cnn(dropout=False), "dropout is missing"),
    (lambda: sequential_cnn(final=nn.Softmax(dim=1)), "logits"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "7,850 parameters"),
    (lambda: "a model", "not an nn.Module"),
])
def test_model_check_rejects_wrong_models(answer, fragment):
    result = grade("make_two_layer_cnn", answer)
    assert not result.passed and fragment in result.message


def no_zero_grad(model, optimizer, X, y):
    loss = F.cross_entropy(model(X), y)
    loss.backward()
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


def test_train_step_accepts_the_reference():
    assert grade("train_step", train_step_reference).passed


@pytest.mark.parametrize("answer, fragment", [
    (no_zero_grad, "zero_grad"),
    (no_step, "optimizer.step()"),
    (summed_loss, "mean over the batch"),
])
def test_train_step_mistakes_get_their_hint(answer, fragment):
    result = grade("train_step", answer)
    assert not result.passed and fragment in result.message


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
    for qid in ("flat_features", "make_two_layer_cnn", "train_step"):
        result = check(qid, answer)
        assert not result.passed and result.attempted == attempted and fragment in result.message
    printed = capsys.readouterr().out
    assert printed.count("⏳" if not attempted else "❌") == 3


def test_check_prints_what_it_verified(capsys):
    result = check("flat_features", flat_features_reference)
    assert result.passed and capsys.readouterr().out.startswith("✅ PASS [flat_features] flat_features is right")


def test_unknown_question_is_a_message_not_an_error():
    result = grade("no_such_question", 1)
    assert not result.passed and "unknown question id" in result.message and "flat_features" in result.message
