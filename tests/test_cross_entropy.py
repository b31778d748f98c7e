"""Notebook 02: softmax, cross-entropy and their hand gradients, softmax regression by hand, and every check."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.gradcheck import GradcheckError

from course_utils import softmax_regression as sr
from course_utils.checks import NOT_ATTEMPTED, QUESTIONS, grade, questions_for, written_for
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

QIDS = ["softmax", "shift_logits", "cross_entropy", "initial_loss", "batch_loss", "cross_entropy_grad",
        "softmax_backward", "sgd_step"]
ROWS = torch.arange


def test_questions_of_notebook_02_are_registered_with_kinds_and_hints():
    questions = questions_for("02_cross_entropy_derivation")
    assert [q.id for q in questions] == QIDS
    assert [q.kind for q in questions] == ["implement", "concept", "implement", "predict", "debug", "implement",
                                           "backward", "implement"]
    assert all(2 <= len(q.hints) <= 3 for q in questions)
    assert [w.id for w in written_for("02_cross_entropy_derivation")] == ["gradient_meaning", "why_cross_entropy"]


def stub(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("qid", [q for q in QIDS if q not in ("shift_logits", "initial_loss")])
def test_a_stub_is_not_attempted(qid):
    result = grade(qid, stub)
    assert not result.passed and not result.attempted and NOT_ATTEMPTED in result.message


@pytest.mark.parametrize("qid", ["shift_logits", "initial_loss"])
def test_an_unanswered_value_is_not_attempted(qid):
    result = grade(qid, None)
    assert not result.attempted and NOT_ATTEMPTED in result.message


def passes(qid, answer):
    result = grade(qid, answer)
    assert result.passed, result.message
    return result


def fails_with(qid, answer, says):
    """The answer fails with `says` in its message, and the message keeps the formula (the solution) back."""
    result = grade(qid, answer)
    assert not result.passed and says in result.message, result.message
    assert QUESTIONS[qid].reveal not in result.message
    return result


# ---------- softmax

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
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def softmax_logsumexp_numpy(z):
    """torch.logsumexp is allowed; the result as a NumPy array, broadcast with [:, None]."""
    return np.exp((z - torch.logsumexp(z, dim=1)[:, None]).numpy())


def naive_softmax(z):
    return z.exp() / z.exp().sum(dim=1, keepdim=True)


def global_max_softmax(z):
    e = (z - z.max()).exp()
    return e / e.sum(dim=1, keepdim=True)


def softmax_axis0(z):
    e = (z - z.amax(dim=0, keepdim=True)).exp()
    return e / e.sum(dim=0, keepdim=True)


def row_max_axis0_exp(z):
    """Each row's max subtracted, then normalised over the batch."""
    e = (z - z.amax(dim=1, keepdim=True)).exp()
    return e / e.sum(dim=0)


def log_round_trip(z):
    """Right where every logit is positive; nan where one is negative."""
    return z.log().exp()


@pytest.mark.parametrize("answer", [sr.softmax, softmax_loops, softmax_float32, softmax_logsumexp_numpy])
def test_softmax_accepts_correct_versions(answer):
    passes("softmax", answer)


@pytest.mark.parametrize("answer, says", [
    (naive_softmax, "exp(1000) overflows"),
    (global_max_softmax, "each row's own max"),
    (softmax_axis0, "normalises over the batch (axis 0)"),
    (row_max_axis0_exp, "normalises over the batch (axis 0)"),
    (lambda z: (z - z.amax(1, keepdim=True)).exp(), "sum to"),
    (lambda z: sr.softmax(z)[:, :-1], "has shape"),
    (sr.log_softmax, "these are log-probabilities"),
    (lambda z: sr.softmax(sr.softmax(z)), "a softmax of a softmax"),
    (lambda z: z / z.sum(dim=1, keepdim=True), "the exponential is missing"),
    (lambda z: sr.softmax(log_round_trip(z)), "gives inf or nan on ordinary logits"),
    (lambda z: sr.softmax(z) - 0.5 * (z > 1.5), "has negative entries"),
    (lambda z: 1.01 * sr.softmax(z), "sum to"),
    (lambda z: sr.softmax(z) + 1e-3 * (z - z.mean(1, keepdim=True)), "off from the reference"),
])
def test_softmax_names_each_mistake(answer, says):
    fails_with("softmax", answer, says)


@pytest.mark.parametrize("answer, name", [
    (lambda z: torch.softmax(z, dim=1), "torch.softmax"),
    (lambda z: F.softmax(z, dim=-1), "F.softmax"),
    (lambda z: nn.Softmax(dim=1)(z), "F.softmax (or nn.Softmax)"),
    (lambda z: z.softmax(1), "Tensor.softmax"),
    (lambda z: torch.special.softmax(z, 1), "torch.special.softmax"),
    (lambda z: torch.log_softmax(z, 1).exp(), "torch.log_softmax"),
    (lambda z: F.log_softmax(z, 1).exp(), "F.log_softmax"),
    (lambda z: nn.LogSoftmax(dim=1)(z).exp(), "F.log_softmax (or nn.LogSoftmax)"),
    (lambda z: z.log_softmax(1).exp(), "Tensor.log_softmax"),
    (lambda z: torch.special.log_softmax(z, 1).exp(), "torch.special.log_softmax"),
])
def test_softmax_rejects_each_builtin_even_inside_a_wrapper(answer, name):
    def wrapper(z):
        return answer(z)

    result = fails_with("softmax", wrapper, f"softmax calls {name}")
    assert "does not count" in result.message and "torch.exp" in result.message and result.points == 0


def test_a_builtin_with_the_wrong_axis_hears_about_the_axis_first():
    fails_with("softmax", lambda z: torch.softmax(z, dim=0), "normalises over the batch (axis 0)")


# ---------- shift_logits

@pytest.mark.parametrize("answer", ["a", "A", " a "])
def test_shift_logits_accepts_the_right_letter(answer):
    assert "cancels" in passes("shift_logits", answer).message


@pytest.mark.parametrize("answer, says", [
    ("b", "so is every term of the denominator"),
    ("c", "MULTIPLYING the logits"),
    ("d", "cannot all grow"),
    ("e", "not an option"),
    (1, "answer with a letter"),
])
def test_shift_logits_explains_each_wrong_option(answer, says):
    fails_with("shift_logits", answer, says)


# ---------- cross_entropy and batch_loss (the same loss, the second one to debug)

def ce_loops(z, y):
    total = 0.0
    for row, target in zip(z.tolist(), y.tolist()):
        top = max(row)
        total -= row[target] - top - np.log(sum(np.exp(v - top) for v in row))
    return total / len(y)


def ce_logsumexp_one_hot(z, y):
    """torch.logsumexp and F.one_hot are allowed."""
    log_p = z - torch.logsumexp(z, dim=1, keepdim=True)
    return -(F.one_hot(y, z.shape[1]) * log_p).sum(dim=1).mean()


def ce_numpy(z, y):
    a = z.numpy()
    shifted = a - a.max(axis=1)[:, None]
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1))[:, None]
    return -log_p[np.arange(len(a)), y.numpy()].mean()


def buggy_batch_loss(logits, targets):
    """The notebook's function to debug: the batch's max, a sum over axis 0, a sum over the batch."""
    shifted = logits - logits.max()
    log_p = shifted - shifted.exp().sum(dim=0).log()
    return -log_p[torch.arange(len(targets)), targets].sum()


def loss_with(bugs):
    """The loss with some of buggy_batch_loss's bugs: 'max', 'axis', 'sum'."""
    def loss(logits, targets):
        shifted = logits - (logits.max() if "max" in bugs else logits.amax(dim=1, keepdim=True))
        log_p = shifted - (shifted.exp().sum(dim=0).log() if "axis" in bugs
                           else shifted.exp().sum(dim=1, keepdim=True).log())
        picked = -log_p[torch.arange(len(targets)), targets]
        return picked.sum() if "sum" in bugs else picked.mean()
    return loss


LOSS_RIGHT = [sr.cross_entropy, ce_loops, ce_logsumexp_one_hot, ce_numpy,
              lambda z, y: -torch.log(sr.softmax(z.float())).gather(1, y[:, None]).mean()]
LOSS_MISTAKES = [
    (lambda z, y: -naive_softmax(z).log()[ROWS(len(y)), y].mean(), "exp(1000) overflows"),
    (lambda z, y: -global_max_softmax(z).log()[ROWS(len(y)), y].mean(), "each row's own max"),
    (lambda z, y: len(y) * sr.cross_entropy(z, y), "a sum over the batch where the mean belongs"),
    (lambda z, y: sr.cross_entropy(z, y) / len(y), "divided by the batch size twice"),
    (lambda z, y: -sr.log_softmax(z)[ROWS(len(y)), y], "one per example"),
    (lambda z, y: -sr.cross_entropy(z, y), "the sign is wrong"),
    (lambda z, y: len(y) * -sr.cross_entropy(z, y), "the sign is wrong and it is"),
    (lambda z, y: -(F.one_hot(y, z.shape[1]) * sr.log_softmax(z)).mean(), "averaged over the classes too"),
    (lambda z, y: -softmax_axis0(z).log()[ROWS(len(y)), y].mean(), "over the batch (axis 0)"),
    (lambda z, y: sr.cross_entropy(sr.softmax(z), y), "a softmax was applied to the logits"),
    (lambda z, y: -sr.softmax(z)[ROWS(len(y)), y].mean(), "the log is missing"),
    (lambda z, y: -z[ROWS(len(y)), y].mean(), "the normaliser) is missing"),
    (lambda z, y: -z.log()[ROWS(len(y)), y].mean(), "takes the log of the logits themselves"),
    (lambda z, y: sr.cross_entropy(log_round_trip(z), y), "gives inf or nan on ordinary logits"),
    (lambda z, y: 1.5 * sr.cross_entropy(z, y), "off from the reference"),
    (lambda z, y: -F.one_hot(y, z.shape[1]) * sr.log_softmax(z), "has shape (7, 3), expected ()"),
]
LOSS_BUILTIN_WRAPPERS = [
    (lambda z, y: F.cross_entropy(z, y), "F.cross_entropy (or nn.CrossEntropyLoss)"),
    (lambda z, y: nn.CrossEntropyLoss()(z, y), "F.cross_entropy (or nn.CrossEntropyLoss)"),
    (lambda z, y: F.nll_loss(sr.log_softmax(z), y), "F.nll_loss (or nn.NLLLoss)"),
    (lambda z, y: nn.NLLLoss()(sr.log_softmax(z), y), "F.nll_loss (or nn.NLLLoss)"),
    (lambda z, y: -torch.log_softmax(z, 1)[ROWS(len(y)), y].mean(), "torch.log_softmax"),
    (lambda z, y: -F.softmax(z, 1).log()[ROWS(len(y)), y].mean(), "F.softmax"),
]


@pytest.mark.parametrize("qid", ["cross_entropy", "batch_loss"])
@pytest.mark.parametrize("answer", LOSS_RIGHT)
def test_the_loss_accepts_correct_versions(qid, answer):
    passes(qid, answer)


@pytest.mark.parametrize("qid", ["cross_entropy", "batch_loss"])
@pytest.mark.parametrize("answer, says", LOSS_MISTAKES)
def test_the_loss_names_each_mistake(qid, answer, says):
    fails_with(qid, answer, says)


@pytest.mark.parametrize("qid", ["cross_entropy", "batch_loss"])
@pytest.mark.parametrize("answer, name", LOSS_BUILTIN_WRAPPERS)
def test_the_loss_rejects_each_builtin_even_inside_a_wrapper(qid, answer, name):
    def wrapper(z, y):
        return answer(z, y)

    result = fails_with(qid, wrapper, f"{qid} calls {name}")
    assert "torch.logsumexp" in result.message


def test_a_builtin_answer_itself_is_rejected():
    fails_with("cross_entropy", F.cross_entropy, "cross_entropy calls F.cross_entropy")


@pytest.mark.parametrize("bugs, says", [
    ({"max", "axis", "sum"}, "over the batch (axis 0) instead of over the classes; and it is 7 times too large"),
    ({"axis", "sum"}, "over the batch (axis 0) instead of over the classes; and it is 7 times too large"),
    ({"max", "sum"}, "a sum over the batch where the mean belongs"),
    ({"max", "axis"}, "over the batch (axis 0) instead of over the classes."),
    ({"max"}, "each row's own max"),
])
def test_batch_loss_names_the_bugs_of_the_notebooks_function(bugs, says):
    fails_with("batch_loss", loss_with(bugs), says)


def test_the_notebooks_buggy_function_gets_its_first_diagnosis_and_the_fix_passes():
    fails_with("batch_loss", buggy_batch_loss, "over the batch (axis 0) instead of over the classes; and it is 7")
    assert passes("batch_loss", loss_with(set())).message.startswith("fixed:")


# ---------- initial_loss

@pytest.mark.parametrize("answer", [math.log(10), 2.3026, np.log(10), torch.tensor(10.0).log(), 2.3])
def test_initial_loss_accepts_log_c_in_any_form(answer):
    assert "log C" in passes("initial_loss", answer).message


@pytest.mark.parametrize("answer, says", [
    (0.1, "the probability of each class"),
    (1.0, "log base 10"),
    (math.log2(10), "log base 2"),
    (-math.log(10), "the sign is wrong"),
    (0, "a loss of 0 needs probability 1"),
    (10 * math.log(10), "sums the loss over the classes"),
    (5.0, "not what softmax and the loss give"),
])
def test_initial_loss_names_each_wrong_prediction_with_credit_for_writing_it_down(answer, says):
    result = fails_with("initial_loss", answer, says)
    assert result.points == 0.5 and "In fact" in result.message and "log C = 2.3026" in result.message


@pytest.mark.parametrize("answer", ["2.3", [2.3], True])
def test_initial_loss_wants_a_number(answer):
    assert fails_with("initial_loss", answer, "should be a number").points == 0


# ---------- cross_entropy_grad

def grad_loops(z, y):
    m, C = z.shape
    p = softmax_loops(z)
    targets = y.tolist()
    return [[(p[i][j] - (j == targets[i])) / m for j in range(C)] for i in range(m)]


def grad_indexing_numpy(z, y):
    """The one-hot by indexing, the result a NumPy array."""
    p = sr.softmax(z)
    p[torch.arange(len(y)), y] -= 1
    return (p / len(y)).numpy()


def grad_autograd(z, y):
    z = z.detach().clone().requires_grad_()
    sr.cross_entropy(z, y).backward()
    return z.grad


def grad_builtin_loss_autograd(z, y):
    z = z.detach().clone().requires_grad_()
    F.cross_entropy(z, y).backward()
    return z.grad


GRAD_RIGHT = [sr.cross_entropy_grad, grad_loops, grad_indexing_numpy, lambda z, y: sr.cross_entropy_grad(z.float(), y)]
GRAD_MISTAKES = [
    (lambda z, y: -sr.cross_entropy_grad(z, y), "the sign is wrong"),
    (lambda z, y: len(y) * sr.cross_entropy_grad(z, y), "the batch size is not divided out"),
    (lambda z, y: sr.cross_entropy_grad(z, y) / len(y), "divided by the batch size twice"),
    (lambda z, y: -len(y) * sr.cross_entropy_grad(z, y), "the sign is wrong and it is 7 times too large"),
    (lambda z, y: sr.cross_entropy_grad(z, y) / z.shape[1], "averaged over the classes too"),
    (lambda z, y: 2 * sr.cross_entropy_grad(z, y), "it is 2 times the right one"),
    (lambda z, y: (softmax_axis0(z) - F.one_hot(y, z.shape[1])) / len(y), "over the batch (axis 0)"),
    (lambda z, y: sr.softmax(z) / len(y), "one-hot of the true class is missing"),
    (lambda z, y: sr.softmax(z) / len(y) ** 2, "these do not; and it is 7 times too small"),
    (lambda z, y: (row_max_axis0_exp(z) - F.one_hot(y, z.shape[1])) / len(y), "over the batch (axis 0)"),
    (lambda z, y: sr.softmax(z) / len(y) - F.one_hot(y, z.shape[1]), "its rows sum to"),
    (lambda z, y: (naive_softmax(z) - F.one_hot(y, z.shape[1])) / len(y), "exp(1000) overflows"),
    (lambda z, y: (global_max_softmax(z) - F.one_hot(y, z.shape[1])) / len(y), "each row's own max"),
    (lambda z, y: sr.cross_entropy_grad(z, y).T, "has shape"),
    (lambda z, y: sr.cross_entropy_grad(z, (y + 1) % z.shape[1]), "compared with autograd"),
]


@pytest.mark.parametrize("answer", GRAD_RIGHT)
def test_cross_entropy_grad_accepts_correct_versions(answer):
    passes("cross_entropy_grad", answer)


@pytest.mark.parametrize("answer, says", GRAD_MISTAKES)
def test_cross_entropy_grad_names_each_mistake(answer, says):
    fails_with("cross_entropy_grad", answer, says)


def grad_autograd_grad(z, y):
    z = z.detach().clone().requires_grad_()
    return torch.autograd.grad(sr.cross_entropy(z, y), z)[0]


def grad_autograd_backward(z, y):
    z = z.detach().clone().requires_grad_()
    torch.autograd.backward(sr.cross_entropy(z, y))
    return z.grad


@pytest.mark.parametrize("answer, name", [
    (grad_autograd, "autograd (.backward)"),
    (grad_builtin_loss_autograd, "F.cross_entropy (or nn.CrossEntropyLoss), autograd (.backward)"),
    (grad_autograd_grad, "autograd (torch.autograd.grad)"),
    (grad_autograd_backward, "autograd (torch.autograd.backward)"),
    (lambda z, y: torch.func.grad(lambda v: sr.cross_entropy(v, y))(z), "autograd (torch.autograd.grad)"),
    (lambda z, y: torch.autograd.functional.jacobian(lambda v: sr.cross_entropy(v, y), z),
     "autograd (torch.autograd.grad)"),
    (lambda z, y: (torch.softmax(z, 1) - F.one_hot(y, z.shape[1])) / len(y), "torch.softmax"),
])
def test_cross_entropy_grad_rejects_autograd_and_builtins_even_inside_a_wrapper(answer, name):
    result = fails_with("cross_entropy_grad", answer, f"cross_entropy_grad calls {name}")
    assert "no .backward()" in result.message


# ---------- softmax_backward

def backward_formula(z, grad_p):
    p = sr.softmax(z)
    return p * (grad_p - (grad_p * p).sum(dim=1, keepdim=True))


def backward_jacobian(z, grad_p):
    """The full Jacobian per row, diag(p) - p p^T, applied with einsum."""
    p = sr.softmax(z)
    jacobian = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("ijk,ij->ik", jacobian, grad_p)


def backward_loops(z, grad_p):
    """Python floats and the derivative dp_k/dz_j = p_k (1{j = k} - p_j), as a nested list."""
    out = []
    for p, g in zip(softmax_loops(z), grad_p.tolist()):
        out.append([sum(g[k] * p[k] * ((j == k) - p[j]) for k in range(len(p))) for j in range(len(p))])
    return out


@pytest.mark.parametrize("answer", [backward_formula, backward_jacobian, backward_loops,
                                    lambda z, g: backward_formula(z, g).numpy()])
def test_softmax_backward_accepts_correct_versions(answer):
    assert "below 1e-7" in passes("softmax_backward", answer).message


@pytest.mark.parametrize("answer, says", [
    (lambda z, g: sr.softmax(z) * g, "the diagonal of the softmax Jacobian"),
    (lambda z, g: sr.softmax(z) * (1 - sr.softmax(z)) * g, "the derivative of a sigmoid"),
    (lambda z, g: sr.softmax(z) * (g - (g * sr.softmax(z)).sum(dim=0, keepdim=True)), "runs over the batch"),
    (lambda z, g: sr.softmax(z) * (1 - sr.softmax(z)), "does not use the upstream gradient"),
    (lambda z, g: -backward_formula(z, g), "the sign is wrong"),
    (lambda z, g: 0.5 * backward_formula(z, g), "it is 0.5 times the right one"),
    (lambda z, g: naive_softmax(z) * (g - (g * naive_softmax(z)).sum(dim=1, keepdim=True)), "exp(1000) overflows"),
    (lambda z, g: backward_formula(z, g) * (1 + 1e-5 * torch.rand(z.shape, dtype=z.dtype)),
     "your relative error should be below 1e-7"),
    (lambda z, g: backward_formula(z, g)[:, :-1], "has shape"),
])
def test_softmax_backward_names_each_mistake(answer, says):
    fails_with("softmax_backward", answer, says)


def test_softmax_backward_in_float32_gets_partial_credit():
    result = fails_with("softmax_backward", lambda z, g: backward_formula(z.float(), g.float()), "in float32")
    assert result.points == 0.5 and "the right values at float32 precision" in result.message


@pytest.mark.parametrize("answer, name", [
    (lambda z, g: torch.autograd.grad(sr.softmax(z.requires_grad_()), z, g)[0], "autograd (torch.autograd.grad)"),
    (lambda z, g: torch.func.vjp(sr.softmax, z)[1](g)[0], "autograd (torch.autograd.grad)"),
    (lambda z, g: torch.softmax(z, 1) * (g - (g * torch.softmax(z, 1)).sum(1, keepdim=True)), "torch.softmax"),
])
def test_softmax_backward_rejects_autograd_and_builtins(answer, name):
    fails_with("softmax_backward", answer, f"softmax_backward calls {name}")


# ---------- sgd_step

def step_autograd(W, b, X, y, lr):
    W, b = W.clone().requires_grad_(), b.clone().requires_grad_()
    F.cross_entropy(X @ W.T + b, y).backward()
    return (W - lr * W.grad).detach(), (b - lr * b.grad).detach()


def step_in_place(W, b, X, y, lr):
    _, dW, db = sr.softmax_regression_grads(W, b, X, y)
    W -= lr * dW
    b -= lr * db
    return W, b


def step_numpy_einsum(W, b, X, y, lr):
    """NumPy arrays in a list, the gradient by einsum and a one-hot by indexing."""
    W, b, X = W.numpy(), b.numpy(), X.numpy()
    z = X @ W.T + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    dz = e / e.sum(axis=1, keepdims=True)
    dz[np.arange(len(X)), y.numpy()] -= 1
    dz /= len(X)
    return [W - lr * np.einsum("mc,md->cd", dz, X), b - lr * dz.sum(axis=0)]


def step_with(transform):
    """sgd_step with the gradients (dW, db) changed by `transform(dW, db, m, lr)` before the step."""
    def step(W, b, X, y, lr):
        _, dW, db = sr.softmax_regression_grads(W, b, X, y)
        dW, db = transform(dW, db, len(X), lr)
        return W - lr * dW, b - lr * db
    return step


@pytest.mark.parametrize("answer", [sr.sgd_step, step_in_place, step_numpy_einsum])
def test_sgd_step_accepts_correct_versions(answer):
    assert "the loss went" in passes("sgd_step", answer).message


@pytest.mark.parametrize("answer, says", [
    (step_with(lambda dW, db, m, lr: (-dW, -db)), "W moved uphill"),
    (step_with(lambda dW, db, m, lr: (m * dW, m * db)), "the step of W is 8 times too large: a sum over the batch"),
    (step_with(lambda dW, db, m, lr: (dW / m, db / m)), "the step of W is 8 times too small: divided by the batch "
                                                        "size m twice"),
    (step_with(lambda dW, db, m, lr: (dW / lr, db)), "the step of W ignores the learning rate"),
    (step_with(lambda dW, db, m, lr: (lr * dW, db)), "the learning rate is applied twice to W"),
    (step_with(lambda dW, db, m, lr: (0 * dW, db)), "W did not change"),
    (step_with(lambda dW, db, m, lr: (dW, 0 * db)), "b did not change"),
    (step_with(lambda dW, db, m, lr: (dW, m * db)), "the step of b is 8 times too large"),
    (step_with(lambda dW, db, m, lr: (dW, db / m)), "the step of b is 8 times too small"),
    (step_with(lambda dW, db, m, lr: (2 * dW, db)), "it is 2 times the right one"),
    (step_with(lambda dW, db, m, lr: (dW + 0.01, db)), "W_new from"),
    (step_with(lambda dW, db, m, lr: (dW, db + 0.01)), "b_new from"),
    (lambda W, b, X, y, lr: W, "return the pair"),
    (lambda W, b, X, y, lr: (W.T, b), "W_new has shape"),
    (lambda W, b, X, y, lr: (W, b[None]), "b_new has shape"),
])
def test_sgd_step_names_each_mistake(answer, says):
    fails_with("sgd_step", answer, says)


def step_softmax_builtin(W, b, X, y, lr):
    dz = (torch.softmax(X @ W.T + b, dim=1) - F.one_hot(y, len(b))) / len(X)
    return W - lr * dz.T @ X, b - lr * dz.sum(dim=0)


@pytest.mark.parametrize("answer, name", [
    (step_autograd, "F.cross_entropy (or nn.CrossEntropyLoss), autograd (.backward)"),
    (step_softmax_builtin, "torch.softmax"),
])
def test_sgd_step_rejects_autograd_and_builtins(answer, name):
    fails_with("sgd_step", answer, f"sgd_step calls {name}")
