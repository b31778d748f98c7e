"""Notebook 02: softmax, cross-entropy and their hand gradients, softmax regression by hand, and every check."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.gradcheck import GradcheckError

from course_utils import softmax_regression as sr
from course_utils.checks import NOT_ATTEMPTED, QUESTIONS, grade, questions_for, set_student, written_for
from course_utils.checks.cross_entropy import push_batch
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

QIDS = ["tempered_grad", "initial_loss", "batch_loss", "smoothed_grad", "smoothed_floor", "largest_push",
        "softmax_backward", "weighted_step"]
ROWS = torch.arange


def test_questions_of_notebook_02_are_registered_with_kinds_and_hints():
    questions = questions_for("02_cross_entropy_derivation")
    assert [q.id for q in questions] == QIDS
    assert [q.kind for q in questions] == ["implement", "predict", "debug", "implement", "predict", "concept",
                                           "backward", "implement"]
    assert all(2 <= len(q.hints) <= 3 for q in questions)
    assert [w.id for w in written_for("02_cross_entropy_derivation")] == ["gradient_meaning", "why_cross_entropy"]


def stub(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("qid", [q for q in QIDS if q not in ("smoothed_floor", "initial_loss", "largest_push")])
def test_a_stub_is_not_attempted(qid):
    result = grade(qid, stub)
    assert not result.passed and not result.attempted and NOT_ATTEMPTED in result.message


@pytest.mark.parametrize("qid", ["smoothed_floor", "initial_loss", "largest_push"])
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


# ---------- helpers: softmax in several styles

def softmax_loops(z):
    """Row by row with Python floats, returned as a nested list."""
    rows = []
    for row in z.tolist():
        top = max(row)
        e = [np.exp(v - top) for v in row]
        rows.append([v / sum(e) for v in e])
    return rows


def naive_softmax(z):
    return z.exp() / z.exp().sum(dim=1, keepdim=True)


def global_max_softmax(z):
    e = (z - z.max()).exp()
    return e / e.sum(dim=1, keepdim=True)


def softmax_axis0(z):
    e = (z - z.amax(dim=0, keepdim=True)).exp()
    return e / e.sum(dim=0, keepdim=True)


def log_round_trip(z):
    """Right where every logit is positive; nan where one is negative."""
    return z.log().exp()


def one_hot(y, C):
    return F.one_hot(y, C).double()


# ---------- tempered_grad

def tempered(z, y, T):
    return (sr.softmax(z / T) - F.one_hot(y, z.shape[1])) / (len(y) * T)


def tempered_loops(z, y, T):
    """Python floats, the softmax of the scaled row by hand, a nested list."""
    m, C = z.shape
    p = softmax_loops(z / T)
    return [[(p[i][j] - (j == y[i].item())) / (m * T) for j in range(C)] for i in range(m)]


def tempered_numpy_chain_rule(z, y, T):
    """NumPy: the lecture's gradient at u = z / T, then times du/dz = 1/T; the one-hot by indexing."""
    u = z.numpy() / T
    e = np.exp(u - u.max(axis=1, keepdims=True))
    g = e / e.sum(axis=1, keepdims=True)
    g[np.arange(len(u)), y.numpy()] -= 1
    return g / len(u) * (1 / T)


def tempered_logsumexp(z, y, T):
    """exp(u - logsumexp(u)) is a stable softmax too."""
    u = z / T
    return (torch.exp(u - torch.logsumexp(u, dim=1, keepdim=True)) - F.one_hot(y, z.shape[1])) / len(y) / T


@pytest.mark.parametrize("answer", [tempered, tempered_loops, tempered_numpy_chain_rule, tempered_logsumexp,
                                    lambda z, y, T: tempered(z.float(), y, T)])
def test_tempered_grad_accepts_correct_versions(answer):
    assert "z / T near 1000" in passes("tempered_grad", answer).message


@pytest.mark.parametrize("answer, says", [
    (lambda z, y, T: T * tempered(z, y, T), "a factor T = 2.5 too much: the chain rule"),
    (lambda z, y, T: T * T * tempered(z, y, T), "multiplied by T where the chain rule divides"),
    (lambda z, y, T: tempered(z, y, T) / T, "divided by T twice"),
    (lambda z, y, T: sr.cross_entropy_grad(z, y), "the temperature is missing altogether"),
    (lambda z, y, T: sr.cross_entropy_grad(z, y) / T, "not from the scaled logits z / T"),
    (lambda z, y, T: (sr.softmax(z * T) - F.one_hot(y, z.shape[1])) / (len(y) * T), "multiplied by T inside"),
    (lambda z, y, T: (softmax_axis0(z / T) - F.one_hot(y, z.shape[1])) / (len(y) * T), "over the batch (axis 0)"),
    (lambda z, y, T: sr.softmax(z / T) / (len(y) * T), "one-hot of the true class is missing"),
    (lambda z, y, T: -tempered(z, y, T), "the sign is wrong"),
    (lambda z, y, T: len(y) * tempered(z, y, T), "7 times too large"),
    (lambda z, y, T: (naive_softmax(z / T) - F.one_hot(y, z.shape[1])) / (len(y) * T), "z / T is near 1000"),
    (lambda z, y, T: (global_max_softmax(z / T) - F.one_hot(y, z.shape[1])) / (len(y) * T), "each row's own max"),
    (lambda z, y, T: tempered(z, y, T) + 1e-3 * (z.sin() - z.sin().mean(dim=1, keepdim=True)),
     "off from the reference"),
    (lambda z, y, T: tempered(z, y, T) + 1e-3, "its rows sum to"),
    (lambda z, y, T: tempered(z, y, T).T, "has shape"),
])
def test_tempered_grad_names_each_mistake(answer, says):
    fails_with("tempered_grad", answer, says)


def test_a_tempered_grad_without_the_shift_fails_on_large_scaled_logits_and_says_why():
    result = fails_with("tempered_grad", lambda z, y, T: (naive_softmax(z / T) - F.one_hot(y, z.shape[1]))
                        / (len(y) * T), "exp of that overflows")
    assert "shift of section 6" in result.message


@pytest.mark.parametrize("answer, name", [
    (lambda z, y, T: (torch.softmax(z / T, 1) - F.one_hot(y, z.shape[1])) / (len(y) * T), "torch.softmax"),
    (lambda z, y, T: torch.autograd.grad(F.cross_entropy(z.requires_grad_() / T, y), z)[0],
     "F.cross_entropy (or nn.CrossEntropyLoss), autograd (torch.autograd.grad)"),
])
def test_tempered_grad_rejects_autograd_and_builtins(answer, name):
    result = fails_with("tempered_grad", answer, f"tempered_grad calls {name}")
    assert "no .backward()" in result.message


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


@pytest.mark.parametrize("answer", LOSS_RIGHT)
def test_the_loss_accepts_correct_versions(answer):
    passes("batch_loss", answer)


@pytest.mark.parametrize("answer, says", LOSS_MISTAKES)
def test_the_loss_names_each_mistake(answer, says):
    fails_with("batch_loss", answer, says)


@pytest.mark.parametrize("answer, name", LOSS_BUILTIN_WRAPPERS)
def test_the_loss_rejects_each_builtin_even_inside_a_wrapper(answer, name):
    def wrapper(z, y):
        return answer(z, y)

    result = fails_with("batch_loss", wrapper, f"batch_loss calls {name}")
    assert "torch.logsumexp" in result.message


def test_a_builtin_answer_itself_is_rejected():
    fails_with("batch_loss", F.cross_entropy, "batch_loss calls F.cross_entropy")


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
    said = result.message.replace(f"predicted {answer:g}", "")          # the student's own number aside
    assert result.points == 0.5 and "2.30" not in said and "log C" not in said


@pytest.mark.parametrize("answer", ["2.3", [2.3], True])
def test_initial_loss_wants_a_number(answer):
    assert fails_with("initial_loss", answer, "should be a number").points == 0


# ---------- smoothed_grad

def smoothed(z, y, eps):
    C = z.shape[1]
    return (sr.softmax(z) - ((1 - eps) * F.one_hot(y, C) + eps / C)) / len(y)


def smoothed_by_parts(z, y, eps):
    """(1 - eps) times the one-hot gradient plus eps times the gradient against the uniform target 1/C."""
    C = z.shape[1]
    return (1 - eps) * sr.cross_entropy_grad(z, y) + eps * (sr.softmax(z) - 1 / C) / len(y)


def smoothed_loops(z, y, eps):
    m, C = z.shape
    p = softmax_loops(z)
    return [[(p[i][j] - (1 - eps) * (j == y[i].item()) - eps / C) / m for j in range(C)] for i in range(m)]


def smoothed_numpy(z, y, eps):
    a = z.numpy()
    e = np.exp(a - a.max(axis=1, keepdims=True))
    target = np.full(a.shape, eps / a.shape[1])
    target[np.arange(len(a)), y.numpy()] += 1 - eps
    return (e / e.sum(axis=1, keepdims=True) - target) / len(a)


@pytest.mark.parametrize("answer", [smoothed, smoothed_by_parts, smoothed_loops, smoothed_numpy,
                                    lambda z, y, eps: smoothed(z.float(), y, eps)])
def test_smoothed_grad_accepts_correct_versions(answer):
    assert "label_smoothing=eps" in passes("smoothed_grad", answer).message


def others_smoothing(z, y, eps):
    C = z.shape[1]
    return (sr.softmax(z) - (1 - eps) * one_hot(y, C) - eps / (C - 1) * (1 - one_hot(y, C))) / len(y)


@pytest.mark.parametrize("answer, says", [
    (lambda z, y, eps: sr.cross_entropy_grad(z, y), "the smoothing is missing"),
    (lambda z, y, eps: (1 - eps) * sr.cross_entropy_grad(z, y), "has a gradient too"),
    (lambda z, y, eps: (sr.softmax(z) - (1 - eps) * one_hot(y, z.shape[1])) / len(y), "only (1 - ε) Y is there"),
    (lambda z, y, eps: (sr.softmax(z) - (1 - eps) * one_hot(y, z.shape[1]) - eps) / len(y), "every class gets ε, not"),
    (others_smoothing, "spread over the C - 1 wrong classes"),
    (lambda z, y, eps: len(y) * smoothed(z, y, eps), "the batch size is not divided out"),
    (lambda z, y, eps: -smoothed(z, y, eps), "the sign is wrong"),
    (lambda z, y, eps: (softmax_axis0(z) - (1 - eps) * one_hot(y, z.shape[1]) - eps / z.shape[1]) / len(y),
     "over the batch (axis 0)"),
    (lambda z, y, eps: sr.softmax(z) / len(y), "the target is missing"),
    (lambda z, y, eps: (naive_softmax(z) - (1 - eps) * one_hot(y, z.shape[1]) - eps / z.shape[1]) / len(y),
     "exp(1000) overflows"),
    (lambda z, y, eps: (global_max_softmax(z) - (1 - eps) * one_hot(y, z.shape[1]) - eps / z.shape[1]) / len(y),
     "each row's own max"),
    (lambda z, y, eps: smoothed(z, (y + 1) % z.shape[1], eps), "compared with autograd"),
])
def test_smoothed_grad_names_each_mistake(answer, says):
    fails_with("smoothed_grad", answer, says)


def test_smoothed_grad_rejects_autograd():
    def by_autograd(z, y, eps):
        z = z.detach().clone().requires_grad_()
        F.cross_entropy(z, y, label_smoothing=eps).backward()
        return z.grad
    fails_with("smoothed_grad", by_autograd, "smoothed_grad calls F.cross_entropy (or nn.CrossEntropyLoss), "
                                             "autograd (.backward)")


# ---------- smoothed_floor

FLOOR = -(0.91 * math.log(0.91) + 9 * 0.01 * math.log(0.01))


def test_the_floor_is_what_gradient_descent_reaches():
    z = torch.zeros(1, 10, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([z], lr=5.0)
    for _ in range(300):
        loss = F.cross_entropy(z, torch.tensor([0]), label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() == pytest.approx(FLOOR, abs=1e-4)


@pytest.mark.parametrize("answer", [FLOOR, 0.5, 0.5003, np.float64(FLOOR), torch.tensor(FLOOR)])
def test_smoothed_floor_accepts_the_entropy_in_any_form(answer):
    assert "their entropy" in passes("smoothed_floor", answer).message


@pytest.mark.parametrize("answer, says", [
    (0, "the floor for one-hot targets"),
    (-math.log(0.91), "the true class's term alone"),
    (-0.91 * math.log(0.91), "the true class's term alone"),
    (math.log(10), "the loss of equal logits"),
    (-(0.91 * math.log(0.91) + 0.1 * math.log(0.1)), "lumped into one"),
    (FLOOR / math.log(2), "in bits"),
    (1.0, "not the lowest value"),
])
def test_smoothed_floor_names_each_wrong_prediction_without_the_value(answer, says):
    result = fails_with("smoothed_floor", answer, says)
    assert result.points == 0.5 and "0.50" not in result.message and "next cell measures it" in result.message


@pytest.mark.parametrize("answer", ["0.5", [0.5], True])
def test_smoothed_floor_wants_a_number(answer):
    assert fails_with("smoothed_floor", answer, "should be a number").points == 0


# ---------- largest_push

def push_answer(student_id=""):
    """The example whose true class is least likely, and its row's sum of absolute values 2 (1 - p) / m."""
    logits, targets = push_batch(student_id)
    p = sr.softmax(logits)[torch.arange(len(targets)), targets]
    return int(p.argmin()), 2 * (1 - p.min().item()) / len(targets), p


@pytest.fixture
def common_cases():
    set_student("")
    yield
    set_student("")


def test_largest_push_is_the_row_autograd_finds_largest(common_cases):
    logits, targets = push_batch("")
    z = logits.clone().requires_grad_()
    F.cross_entropy(z, targets).backward()
    index, total, _ = push_answer()
    sizes = z.grad.abs().sum(dim=1)
    assert int(sizes.argmax()) == index and sizes.max().item() == pytest.approx(total)


@pytest.mark.parametrize("form", [lambda i, t: (i, t), lambda i, t: [np.int64(i), np.float32(t)],
                                  lambda i, t: (torch.tensor(i), torch.tensor(t))])
def test_largest_push_accepts_the_pair_in_any_form(common_cases, form):
    index, total, _ = push_answer()
    assert "least sure" in passes("largest_push", form(index, total)).message


def test_largest_push_follows_the_students_own_batch():
    alice, bob = push_answer("alice"), push_answer("bob")
    assert not torch.equal(alice[2], bob[2])
    set_student("alice")
    assert grade("largest_push", alice[:2]).passed
    set_student("bob")
    assert grade("largest_push", bob[:2]).passed
    result = grade("largest_push", alice[:2]) if alice[:2] != bob[:2] else None
    assert result is None or not result.passed
    set_student("")


@pytest.mark.parametrize("wrong, says", [
    (lambda i, t, p: (int(p.argmax()), t), "the model is surest of"),
    (lambda i, t, p: (i, t * 6), "the 1/m of the mean is missing"),
    (lambda i, t, p: (i, t / 2), "only the true class's entry is counted; the other"),
    (lambda i, t, p: (i, t * 3), "only the true class's entry is counted, and the 1/m"),
    (lambda i, t, p: (i, t + 0.05), "not the sum of the absolute values"),
    (lambda i, t, p: i, "should be a pair"),
    (lambda i, t, p: (float(i), t), "should be an int"),
    (lambda i, t, p: (6, t), "not one of them"),
])
def test_largest_push_names_each_mistake_without_the_value(common_cases, wrong, says):
    index, total, p = push_answer()
    result = fails_with("largest_push", wrong(index, total, p), says)
    assert f"{total:.3g}" not in result.message and f"{total:.4f}" not in result.message


def test_an_answer_for_the_common_batch_is_told_to_set_student_id():
    common = push_answer("")
    set_student("erin")
    result = fails_with("largest_push", common[:2], "set student_id = 'erin'")
    assert result.points == 0
    set_student("")


def test_the_right_example_with_a_wrong_sum_earns_half(common_cases):
    index, total, _ = push_answer()
    assert fails_with("largest_push", (index, 2 * total), "right one").points == 0.5


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


# ---------- weighted_step

def weighted_reference(W, b, X, y, w, lr):
    """The step by autograd on F.cross_entropy(weight=w), outside the check."""
    W, b = W.clone().requires_grad_(), b.clone().requires_grad_()
    F.cross_entropy(X @ W.T + b, y, weight=w).backward()
    return (W - lr * W.grad).detach(), (b - lr * b.grad).detach()


def weighted_with(dz_of):
    """weighted_step with dJ/dz = dz_of(P, Y, w, y, m)."""
    def step(W, b, X, y, w, lr):
        P = sr.softmax(X @ W.T + b)
        dz = dz_of(P, F.one_hot(y, W.shape[0]).to(P.dtype), w, y, len(X))
        return W - lr * dz.T @ X, b - lr * dz.sum(dim=0)
    return step


RIGHT_DZ = lambda P, Y, w, y, m: w[y][:, None] * (P - Y) / w[y].sum()


def weighted_in_place(W, b, X, y, w, lr):
    wy = w[y]
    dz = sr.softmax(X @ W.T + b)
    dz[torch.arange(len(y)), y] -= 1
    dz *= (wy / wy.sum())[:, None]
    W -= lr * dz.T @ X
    b -= lr * dz.sum(dim=0)
    return W, b


def weighted_numpy(W, b, X, y, w, lr):
    """NumPy arrays in a list, einsum for dW."""
    W, b, X, y, w = W.numpy(), b.numpy(), X.numpy(), y.numpy(), w.numpy()
    z = X @ W.T + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    dz = e / e.sum(axis=1, keepdims=True)
    dz[np.arange(len(X)), y] -= 1
    dz *= w[y][:, None] / w[y].sum()
    return [W - lr * np.einsum("mc,md->cd", dz, X), b - lr * dz.sum(axis=0)]


@pytest.mark.parametrize("answer", [weighted_with(RIGHT_DZ), weighted_in_place, weighted_numpy])
def test_weighted_step_accepts_correct_versions(answer):
    assert "it went" in passes("weighted_step", answer).message


def test_weighted_step_agrees_with_autograd_on_the_reference():
    g = torch.Generator().manual_seed(3)
    W, b, X = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), \
        torch.randn(9, 6, generator=g, dtype=torch.float64)
    y, w = torch.randint(0, 4, (9,), generator=g), torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    for got, want in zip(weighted_with(RIGHT_DZ)(W, b, X, y, w, 0.3), weighted_reference(W, b, X, y, w, 0.3)):
        assert torch.allclose(got, want)


@pytest.mark.parametrize("answer, says", [
    (weighted_with(lambda P, Y, w, y, m: w[y][:, None] * (P - Y) / m), "divided by the batch size m = 8"),
    (weighted_with(lambda P, Y, w, y, m: (P - Y) / m), "the class weights are missing"),
    (weighted_with(lambda P, Y, w, y, m: (P - Y) * w / w[y].sum()), "each column j is weighted by w[j]"),
    (weighted_with(lambda P, Y, w, y, m: (P - Y) * w / m), "each column j is weighted by w[j] and divided by m"),
    (weighted_with(lambda P, Y, w, y, m: w[y][:, None] * (P - Y) / w.sum()), "sum of all C class weights"),
    (weighted_with(lambda P, Y, w, y, m: w[y][:, None] * (P - Y)), "a weighted sum where the weighted mean belongs"),
    (weighted_with(lambda P, Y, w, y, m: -RIGHT_DZ(P, Y, w, y, m)), "W moved uphill"),
    (weighted_with(lambda P, Y, w, y, m: 2 * RIGHT_DZ(P, Y, w, y, m)), "it is 2 times the right one"),
    (weighted_with(lambda P, Y, w, y, m: RIGHT_DZ(P, Y, w, y, m) + 1e-3), "W_new from"),
    (lambda W, b, X, y, w, lr: (W, b), "W did not change"),
    (lambda W, b, X, y, w, lr: W, "return the pair"),
    (lambda W, b, X, y, w, lr: (W.T, b), "W_new has shape"),
])
def test_weighted_step_names_each_mistake(answer, says):
    fails_with("weighted_step", answer, says)


def test_weighted_step_with_its_own_unshifted_softmax_fails_on_large_logits_and_says_why():
    def unshifted(W, b, X, y, w, lr):
        P = naive_softmax(X @ W.T + b)
        dz = RIGHT_DZ(P, F.one_hot(y, W.shape[0]).to(P.dtype), w, y, len(X))
        return W - lr * dz.T @ X, b - lr * dz.sum(dim=0)
    result = fails_with("weighted_step", unshifted, "logits near 740")
    assert "overflows" in result.message and "largest logit" in result.message


@pytest.mark.parametrize("answer, name", [
    (weighted_reference, "F.cross_entropy (or nn.CrossEntropyLoss), autograd (.backward)"),
    (lambda W, b, X, y, w, lr: weighted_with(RIGHT_DZ)(W, b, X, y, w, lr) if torch.softmax(b[None], 1) is None
     else weighted_with(RIGHT_DZ)(W, b, X, y, w, lr), "torch.softmax"),
])
def test_weighted_step_rejects_autograd_and_builtins(answer, name):
    fails_with("weighted_step", answer, f"weighted_step calls {name}")
