"""Notebook 02: softmax, cross-entropy and their hand gradients, softmax regression by hand, and every check."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.gradcheck import GradcheckError

from course_utils import softmax_regression as sr
from course_utils.checks import NOT_ATTEMPTED, grade, questions_for
from course_utils.training import fit


def random_logits(m=7, C=5, dtype=torch.float64, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(m, C, generator=g, dtype=dtype), torch.randint(0, C, (m,), generator=g)


# ---------------------------------------------------------------- the module

@pytest.mark.parametrize("offset", [0.0, 1000.0, -1000.0])
def test_softmax_and_loss_equal_torch_even_for_huge_logits(offset):
    z, y = random_logits()
    z = z + offset
    assert torch.allclose(sr.softmax(z), torch.softmax(z, dim=1))
    assert torch.allclose(sr.log_softmax(z), torch.log_softmax(z, dim=1))
    assert torch.allclose(sr.cross_entropy(z, y), F.cross_entropy(z, y))
    assert torch.allclose(sr.cross_entropy(z, y), nn.CrossEntropyLoss()(z, y))
    assert torch.allclose(F.cross_entropy(z, y, reduction="sum"), len(z) * sr.cross_entropy(z, y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_gradient_equals_autograd(dtype):
    z, y = random_logits(dtype=dtype)
    z.requires_grad_()
    F.cross_entropy(z, y).backward()
    assert torch.allclose(sr.cross_entropy_grad(z.detach(), y), z.grad, atol=1e-6)


def test_hand_gradients_pass_gradcheck():
    z, y = random_logits()
    assert torch.autograd.gradcheck(lambda v: sr.HandCrossEntropy.apply(v, y), (z.requires_grad_(),))
    g = torch.Generator().manual_seed(1)
    W = torch.randn(5, 8, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    X = torch.randn(7, 8, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda W, b: sr.HandSoftmaxRegression.apply(W, b, X, y), (W, b))


def test_gradcheck_catches_a_wrong_gradient():
    z, y = random_logits()

    class WrongSign(sr.HandCrossEntropy):
        @staticmethod
        def backward(ctx, grad_output):
            logits, targets = ctx.saved_tensors
            return -grad_output * sr.cross_entropy_grad(logits, targets), None

    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda v: WrongSign.apply(v, y), (z.requires_grad_(),))


def test_bad_shapes_get_a_clear_error():
    with pytest.raises(ValueError, match=r"logits\[None\]"):
        sr.softmax(torch.zeros(5))
    with pytest.raises(ValueError, match="not one-hot"):
        sr.cross_entropy(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="flatten"):
        sr.sgd_step(torch.zeros(10, 784), torch.zeros(10), torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), 0.1)


def test_training_by_hand_takes_the_same_steps_as_fit(mnist):
    data = mnist.subset(3000, 1000)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    W0, b0 = model[1].weight.detach().clone(), model[1].bias.detach().clone()
    W, b, history = sr.train_softmax_regression(data, W0, b0, epochs=2, lr=0.05, batch_size=100, seed=3)
    auto = fit(model, data, torch.optim.SGD(model.parameters(), lr=0.05), 2, batch_size=100, seed=3,
               device=torch.device("cpu"), progress=False)
    assert len(history.step_loss) == len(auto.step_loss) == 60
    assert np.allclose(history.step_loss, auto.step_loss, atol=1e-5)
    assert torch.allclose(W, model[1].weight.detach(), atol=1e-5) and torch.allclose(b, model[1].bias.detach(), atol=1e-5)
    assert history.test_acc == pytest.approx(auto.test_acc, abs=1e-3)
    assert history.test_acc[-1] > 0.8 and history.step_loss[-1] < history.step_loss[0]


# ---------------------------------------------------------------- the checks

QIDS = ["softmax", "cross_entropy", "cross_entropy_grad", "sgd_step"]


def test_questions_of_notebook_02_are_registered():
    assert [q.id for q in questions_for("02_cross_entropy_derivation")] == QIDS


def stub(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("qid", QIDS)
def test_a_stub_is_not_attempted(qid):
    result = grade(qid, stub)
    assert not result.passed and not result.attempted and NOT_ATTEMPTED in result.message


def softmax_loops(z):
    """Row by row with Python floats, returned as a nested list."""
    rows = []
    for row in z.tolist():
        top = max(row)
        e = [np.exp(v - top) for v in row]
        rows.append([v / sum(e) for v in e])
    return rows


def softmax_float32(z):
    z = z.float()
    return torch.exp(z - z.max(dim=-1, keepdim=True).values) / torch.exp(z - z.max(dim=-1, keepdim=True).values).sum(-1, keepdim=True)


def naive_softmax(z):
    return z.exp() / z.exp().sum(dim=1, keepdim=True)


def global_max_softmax(z):
    e = (z - z.max()).exp()
    return e / e.sum(dim=1, keepdim=True)


def softmax_axis0(z):
    e = (z - z.amax(dim=0, keepdim=True)).exp()
    return e / e.sum(dim=0, keepdim=True)


@pytest.mark.parametrize("answer", [sr.softmax, softmax_loops, softmax_float32,
                                    lambda z: np.exp(sr.log_softmax(z).numpy())])
def test_softmax_accepts_correct_versions(answer):
    assert grade("softmax", answer).passed


@pytest.mark.parametrize("answer, says", [
    (naive_softmax, "exp(1000) overflows"),
    (global_max_softmax, "each row's own max"),
    (softmax_axis0, "normalises over the batch (axis 0)"),
    (lambda z: (z - z.amax(1, keepdim=True)).exp(), "sum to"),
    (lambda z: sr.softmax(z)[:, :-1], "has shape"),
])
def test_softmax_names_each_mistake(answer, says):
    result = grade("softmax", answer)
    assert not result.passed and says in result.message, result.message


def ce_loops(z, y):
    total = 0.0
    for row, target in zip(z.tolist(), y.tolist()):
        top = max(row)
        total -= row[target] - top - np.log(sum(np.exp(v - top) for v in row))
    return total / len(y)


@pytest.mark.parametrize("answer", [sr.cross_entropy, ce_loops, F.cross_entropy,
                                    lambda z, y: -torch.log(sr.softmax(z.float())).gather(1, y[:, None]).mean()])
def test_cross_entropy_accepts_correct_versions(answer):
    assert grade("cross_entropy", answer).passed


@pytest.mark.parametrize("answer, says", [
    (lambda z, y: -naive_softmax(z).log()[torch.arange(len(y)), y].mean(), "exp(1000) overflows"),
    (lambda z, y: -global_max_softmax(z).log()[torch.arange(len(y)), y].mean(), "each row's own max"),
    (lambda z, y: F.cross_entropy(z, y, reduction="sum"), "a sum where the mean belongs"),
    (lambda z, y: F.cross_entropy(z, y, reduction="none"), "one per example"),
    (lambda z, y: -F.cross_entropy(z, y), "the sign is wrong"),
    (lambda z, y: -softmax_axis0(z).log()[torch.arange(len(y)), y].mean(), "over the batch (axis 0)"),
    (lambda z, y: -sr.softmax(z)[torch.arange(len(y)), y].mean(), "off from the reference"),
])
def test_cross_entropy_names_each_mistake(answer, says):
    result = grade("cross_entropy", answer)
    assert not result.passed and says in result.message, result.message


def grad_autograd(z, y):
    z = z.detach().clone().requires_grad_()
    F.cross_entropy(z, y).backward()
    return z.grad


def grad_loops(z, y):
    m, C = z.shape
    p = softmax_loops(z)
    targets = y.tolist()
    return [[(p[i][j] - (j == targets[i])) / m for j in range(C)] for i in range(m)]


@pytest.mark.parametrize("answer", [sr.cross_entropy_grad, grad_autograd, grad_loops,
                                    lambda z, y: sr.cross_entropy_grad(z.float(), y)])
def test_cross_entropy_grad_accepts_correct_versions(answer):
    assert grade("cross_entropy_grad", answer).passed


@pytest.mark.parametrize("answer, says", [
    (lambda z, y: -sr.cross_entropy_grad(z, y), "the sign is wrong"),
    (lambda z, y: len(y) * sr.cross_entropy_grad(z, y), "the batch size is not divided out"),
    (lambda z, y: -len(y) * sr.cross_entropy_grad(z, y), "wrong and it is"),
    (lambda z, y: (softmax_axis0(z) - F.one_hot(y, z.shape[1])) / len(y), "over the batch (axis 0)"),
    (lambda z, y: sr.softmax(z) / len(y), "one-hot of the true class is missing"),
    (lambda z, y: (naive_softmax(z) - F.one_hot(y, z.shape[1])) / len(y), "exp(1000) overflows"),
    (lambda z, y: sr.cross_entropy_grad(z, y).T, "has shape"),
])
def test_cross_entropy_grad_names_each_mistake(answer, says):
    result = grade("cross_entropy_grad", answer)
    assert not result.passed and says in result.message, result.message


def step_autograd(W, b, X, y, lr):
    W, b = W.clone().requires_grad_(), b.clone().requires_grad_()
    F.cross_entropy(X @ W.T + b, y).backward()
    return (W - lr * W.grad).detach(), (b - lr * b.grad).detach()


def step_in_place(W, b, X, y, lr):
    _, dW, db = sr.softmax_regression_grads(W, b, X, y)
    W -= lr * dW
    b -= lr * db
    return W, b


def step_with(transform):
    """sgd_step with the gradients (dW, db) changed by `transform` before the step."""
    def step(W, b, X, y, lr):
        _, dW, db = sr.softmax_regression_grads(W, b, X, y)
        dW, db = transform(dW, db, len(X))
        return W - lr * dW, b - lr * db
    return step


@pytest.mark.parametrize("answer", [sr.sgd_step, step_autograd, step_in_place])
def test_sgd_step_accepts_correct_versions(answer):
    assert grade("sgd_step", answer).passed


@pytest.mark.parametrize("answer, says", [
    (step_with(lambda dW, db, m: (-dW, -db)), "wrong sign"),
    (step_with(lambda dW, db, m: (m * dW, m * db)), "a sum over the batch where the mean belongs"),
    (step_with(lambda dW, db, m: (0 * dW, db)), "W did not change"),
    (step_with(lambda dW, db, m: (dW, 0 * db)), "b did not change"),
    (step_with(lambda dW, db, m: (dW, m * db)), "b_new from"),
    (step_with(lambda dW, db, m: (2 * dW, db)), "W_new from"),
    (lambda W, b, X, y, lr: W, "return the pair"),
    (lambda W, b, X, y, lr: (W.T, b), "W_new has shape"),
])
def test_sgd_step_names_each_mistake(answer, says):
    result = grade("sgd_step", answer)
    assert not result.passed and says in result.message, result.message
