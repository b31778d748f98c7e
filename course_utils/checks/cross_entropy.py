"""Questions of notebook 02 (cross-entropy): the gradients of a tempered and of a label-smoothed cross-entropy,
the loss at initialisation and the lowest smoothed loss (predictions), a buggy loss, which example of a batch
drawn per student the gradient pushes hardest, softmax's backward pass, and one step of softmax regression on a
class-weighted loss.

The implement, debug and backward questions run the student's code inside `tools.Watch`, which sees
the built-ins the sheet forbids even through a wrapper: the softmax family (torch.softmax, F.softmax
and nn.Softmax, Tensor.softmax, torch.special.softmax, and the log_softmax of each), the losses
(F.cross_entropy and nn.CrossEntropyLoss, F.nll_loss and nn.NLLLoss) and autograd (Tensor.backward,
torch.autograd.backward, torch.autograd.grad, which torch.func and torch.autograd.functional reach).
Values are diagnosed first (a wrapper with the wrong axis hears about the axis), the built-in last.
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import Mistake, question, set_student, student, written_question
from .tools import case_generator, case_random
from .tools import Watch, as_tensor, calling, expect_close, expect_shape, forbid, grad_check

NOTEBOOK = "02_cross_entropy_derivation"
SOFTMAX_BUILTINS = {torch.softmax: "torch.softmax", F.softmax: "F.softmax (or nn.Softmax)",
                    torch.Tensor.softmax: "Tensor.softmax", torch.special.softmax: "torch.special.softmax",
                    torch.log_softmax: "torch.log_softmax", F.log_softmax: "F.log_softmax (or nn.LogSoftmax)",
                    torch.Tensor.log_softmax: "Tensor.log_softmax",
                    torch.special.log_softmax: "torch.special.log_softmax"}
LOSS_BUILTINS = {F.cross_entropy: "F.cross_entropy (or nn.CrossEntropyLoss)", F.nll_loss: "F.nll_loss (or nn.NLLLoss)"}
AUTOGRAD = {torch.Tensor.backward: "autograd (.backward)",
            torch.autograd.backward: "autograd (torch.autograd.backward)",
            torch.autograd.grad: "autograd (torch.autograd.grad)"}
WITHOUT_LOSS = ("compute log p yourself (log-sum-exp by hand or torch.logsumexp) and pick each row's true class "
                "by indexing: log_p[torch.arange(m), targets].")
WITHOUT_AUTOGRAD = "write the gradient out from the lecture's derivation; no .backward() and no torch.autograd."
OVERFLOW = "gives inf or nan for logits around 1000: exp(1000) overflows."
ROW_MAX = ("gives inf or nan when the rows lie far apart (around 1000, -1000 and 0): the max of the whole batch is "
           "too far from some rows; subtract each row's own max.")
NOT_FINITE = ("gives inf or nan on ordinary logits (some of them negative): is a log taken of something that can be "
              "0 or negative, such as the logits themselves?")
WRONG_AXIS = "normalises over the batch (axis 0) instead of over the classes"


def _more(qid: str) -> str:
    return f"hint({qid!r}) says more."


def _drawn_size(r: random.Random) -> tuple[int, int]:
    """A batch size m and a class count C drawn for the student: 2 to 12 each, m != C."""
    m, C = r.randint(2, 12), r.randint(2, 12)
    return m, (C if C != m else C + 1)


def _logit_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(kind, logits (m, C), targets (m,)) with m != C: positive, random float64 and float32, large, spread out,
    and random logits of a size drawn for the student."""
    g, (m, C) = case_generator(2), _drawn_size(case_random(2))
    z = lambda m, c, dtype=torch.float64: (3 * torch.randn(m, c, generator=g, dtype=torch.float64)).to(dtype)
    y = lambda m, c: torch.randint(0, c, (m,), generator=g)
    positive = 0.2 + 2 * torch.rand(7, 3, generator=g, dtype=torch.float64)
    return [("positive", positive, y(7, 3)), ("random", z(6, 4), y(6, 4)),
            ("random", z(5, 10, torch.float32), y(5, 10)), ("large", z(4, 3) + 1000, y(4, 3)),
            ("spread", z(3, 5) + torch.tensor([[1000.0], [-1000.0], [0.0]], dtype=torch.float64), y(3, 5)),
            ("random", z(m, C), y(m, C))]


def _not_finite(kind: str) -> str:
    """What a result with inf or nan on logits of this kind says about the code."""
    return {"large": OVERFLOW, "spread": ROW_MAX}.get(kind, NOT_FINITE)


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and bool(torch.allclose(got, want.double(), atol=1e-5, rtol=1e-4))


def _factor(got: torch.Tensor, want: torch.Tensor) -> float | None:
    """The number s with got = s * want (to rounding), or None if got is no multiple of want."""
    norm = (want.double() ** 2).sum()
    if got.shape != want.shape or not torch.isfinite(want).all() or norm == 0:
        return None
    s = ((got * want.double()).sum() / norm).item()
    return s if _close(got, s * want.double()) else None


def _named(s: float | None, names: dict[float, str]) -> str | None:
    """The words for factor `s` if it is one of `names` (to 0.1 %)."""
    if s is None:
        return None
    return next((words for value, words in names.items() if math.isclose(s, value, rel_tol=1e-3)), None)


def _scale_names(m: int, C: int, quantity: str) -> dict[float, str]:
    """The scale slips of a batch-mean `quantity` ('the loss') with m examples and C classes."""
    return {1.0: "", -1.0: "the sign is wrong",
            m: f"{m} times too large (m = {m} examples): the batch size is not divided out, a sum over the batch "
               f"where the mean belongs",
            1 / m: f"{m} times too small (1/m, m = {m} examples): divided by the batch size twice",
            -m: f"the sign is wrong and it is {m} times too large (a sum over the batch where the mean belongs)",
            -1 / m: f"the sign is wrong and it is {m} times too small (divided by the batch size twice)",
            1 / C: f"{C} times too small (1/C, C = {C} classes): {quantity} is averaged over the classes too, "
                   "a mean over all m x C entries",
            C: f"{C} times too large (C = {C} classes)"}


def _diagnose(got: torch.Tensor, variants: list[tuple[str, torch.Tensor]], names: dict[float, str],
              proportional: bool) -> str | None:
    """What `got` is: '' if right, else the words for the first (variant, scale) it equals; None if none.

    `variants` are (what is wrong, value), the right value first with ''. With `proportional`, any
    multiple of the right value is named by its factor.
    """
    factors = [(what, _named(_factor(got, value), names)) for what, value in variants]
    exact = next((what for what, scale in factors if scale == ""), None)       # a variant as it is comes first
    if exact is not None:
        return exact
    for what, scale in factors:
        if scale is not None:
            return "; and it is ".join(w for w in (what, scale) if w)
    s = _factor(got, variants[0][1]) if proportional else None
    if s is not None and abs(s) > 1e-6:
        return f"it is {s:.4g} times the right one: the direction is right, a constant factor slipped in"
    return None


def _watched(answer: Callable[..., Any], forbidden: dict, *args: Any) -> tuple[Any, str]:
    """Call the student's answer inside a Watch; return its result and the forbidden built-ins it used."""
    with Watch(forbidden) as watch, calling(getattr(answer, "__name__", "your function"), *args):
        result = answer(*args)
    return result, watch.used


def _float32(result: Any) -> bool:
    """Whether a torch or NumPy result is float32."""
    return str(getattr(result, "dtype", "")) in ("torch.float32", "float32")


# ---------------------------------------------------------------- gradients of other losses (transfer)

def _grad_names(m: int, C: int, extra: dict[float, str]) -> dict[float, str]:
    """The scale slips of a batch-mean gradient, and `extra` (factors of a particular loss)."""
    names = _scale_names(m, C, "the gradient")
    names.update({s: w for s, w in extra.items() if not any(math.isclose(s, t, rel_tol=1e-3) for t in names)})
    return names


def _grade_grad(answer: Callable[..., Any], qid: str, cases: list[dict]) -> None:
    """Compare a gradient `answer(z, y, setting)` with each case's reference (its first variant); name the slip.

    A case holds kind, z, y, setting (the temperature or the smoothing), shown (the call in words),
    variants [(what is wrong, value)] with the right value first, names (the scale slips) and
    overflow (what inf or nan on this case says)."""
    used = ""
    for case in cases:
        z, y = case["z"], case["y"]
        result, seen = _watched(answer, {**SOFTMAX_BUILTINS, **LOSS_BUILTINS, **AUTOGRAD}, z.clone(), y.clone(),
                                case["setting"])
        used, shown = used or seen, case["shown"]
        got = expect_shape(result, tuple(z.shape), shown, "the gradient has the shape of the logits: one entry "
                           "per logit.")
        if not torch.isfinite(got).all():
            raise Mistake(f"{shown} {case['overflow']}", _more(qid))
        what = _diagnose(got, case["variants"], case["names"], proportional=True)
        if what == "":
            continue
        if what:
            raise Mistake(f"{shown}: {what}.", _more(qid))
        rows = got.sum(dim=1)
        if not _close(rows, torch.zeros(len(z))):
            raise Mistake(f"{shown}: its rows sum to {[float(f'{r:.2g}') for r in rows.tolist()]}, where the "
                          "gradient of this loss sums to 0 over the classes of each row.", _more(qid))
        expect_close(got, case["variants"][0][1], f"{shown} (compared with autograd)", _more(qid))
    forbid(used, qid, WITHOUT_AUTOGRAD)


def _tempered_cases() -> list[dict]:
    """Logits, targets and temperatures: T above and below 1, float32, T = 0.05 with logits near 50 (so that
    z / T is near 1000), rows far apart, then a case drawn for the student."""
    g, r = case_generator(6), case_random(6)
    m, C = _drawn_size(r)
    T = round(r.choice([r.uniform(0.3, 0.8), r.uniform(1.3, 3.0)]), 2)
    specs = [("random", 7, 3, 2.5, 0.0, torch.float64), ("random", 6, 4, 0.4, 0.0, torch.float64),
             ("random", 5, 10, 1.5, 0.0, torch.float32), ("large", 4, 3, 0.05, 50.0, torch.float64),
             ("spread", 3, 5, 0.8, 0.0, torch.float64), ("random", m, C, T, 0.0, torch.float64)]
    spread = torch.tensor([[800.0], [-800.0], [0.0]], dtype=torch.float64)
    cases = []
    for kind, m, C, T, offset, dtype in specs:
        z = 3 * torch.randn(m, C, generator=g, dtype=torch.float64) + (spread if kind == "spread" else offset)
        z = z.to(dtype)
        y = torch.randint(0, C, (m,), generator=g)
        leaf = z.detach().double().clone().requires_grad_()
        F.cross_entropy(leaf / T, y).backward()
        zd, one_hot = z.double(), F.one_hot(y, C).double()
        p, p_plain = torch.softmax(zd / T, dim=1), torch.softmax(zd, dim=1)
        variants = [("", leaf.grad),
                    ("the temperature is missing altogether: this is the lecture's gradient of the loss of z itself",
                     (p_plain - one_hot) / m),
                    ("the probabilities come from softmax(z), not from the scaled logits z / T",
                     (p_plain - one_hot) / (m * T)),
                    ("the logits are multiplied by T inside the softmax, not divided by it",
                     (torch.softmax(zd * T, dim=1) - one_hot) / (m * T)),
                    (f"the softmax inside {WRONG_AXIS}", (torch.softmax(zd / T, dim=0) - one_hot) / (m * T)),
                    ("the one-hot of the true class is missing: the gradient's rows sum to 0, these do not",
                     p / (m * T))]
        extra = {T: f"a factor T = {T:g} too much: the chain rule through z / T contributes a factor 1/T, missing here",
                 T * T: f"a factor T² = {T * T:g} too much: multiplied by T where the chain rule divides by it",
                 1 / T: f"a factor 1/T too much (T = {T:g}): divided by T twice"}
        cases.append(dict(kind=kind, z=z, y=y, setting=T, variants=variants, names=_grad_names(m, C, extra),
                          shown=f"tempered_grad on logits {tuple(z.shape)} with T = {T:g}"
                                + (f" (logits near {offset:g}, so z / T is near {offset / T:g})" if offset else "")
                                + (" (rows near 800, -800 and 0)" if kind == "spread" else ""),
                          overflow=(f"gives inf or nan where z / T is near {offset / T:g}: exp of that overflows. The "
                                    "scaled logits need the shift of section 6 too." if offset else
                                    "gives inf or nan where the rows of z / T lie far apart (near 1000, -1000 and 0): "
                                    "subtract each row's own max." if kind == "spread" else NOT_FINITE)))
    return cases


@question("tempered_grad", NOTEBOOK, kind="implement", hints=(
        "Write J_T(z) = J(u) with u = z / T. Section 3 of the lecture gives dJ/du; the chain rule turns it into dJ/dz. "
        "What is du_ij / dz_ij?",
        "Two things differ from the lecture's gradient: from which logits the probabilities are computed, and one "
        "factor the chain rule adds. With T = 0.05 and logits near 50 the scaled logits are near 1000: your "
        "softmax must shift them (section 6)."),
    reveal="(softmax(z / T) - F.one_hot(targets, C)) / (m * T), with a softmax that subtracts each row's max of z / T.")
def check_tempered_grad(tempered_grad: Callable[..., Any]) -> str:
    _grade_grad(tempered_grad, "tempered_grad", _tempered_cases())
    return ("equals autograd's gradient of F.cross_entropy(z / T, y) for temperatures above and below 1, float32, and "
            "z / T near 1000.")


# ---------------------------------------------------------------- the loss

def _loss_variants(z: torch.Tensor, y: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(what is wrong, the loss it gives) for the real slips in a cross-entropy; the right loss first."""
    z, rows = z.double(), torch.arange(len(y))
    shifted = z - z.amax(dim=1, keepdim=True)
    pick = lambda log_p: -log_p[rows, y].mean()
    variants = [("", F.cross_entropy(z, y)),
                (f"the softmax inside {WRONG_AXIS}", pick(torch.log_softmax(z, dim=0))),
                (f"the log-sum-exp {WRONG_AXIS}", pick(shifted - shifted.logsumexp(dim=0))),
                ("it is the cross-entropy of softmax(z): a softmax was applied to the logits before a loss that "
                 "applies its own, so the probabilities went through softmax twice", F.cross_entropy(z.softmax(1), y)),
                ("the log is missing: this is minus the probability of the true class, not minus its log",
                 -torch.softmax(z, dim=1)[rows, y].mean()),
                ("only the true class's logit is there: the log-sum-exp over the classes (the normaliser) is missing",
                 -z[rows, y].mean())]
    if (z > 0).all():
        variants.append(("it takes the log of the logits themselves: logits are not probabilities, they go "
                         "through a softmax first", pick(z.log())))
    return variants


def _check_loss(loss: Callable[[torch.Tensor, torch.Tensor], Any], name: str, qid: str) -> str:
    """Grade a mean cross-entropy `loss` (questions cross_entropy and batch_loss)."""
    cases = [(kind, z, y, _loss_variants(z, y)) for kind, z, y in _logit_cases()]
    used = ""
    for kind, z, y, variants in cases:
        result, seen = _watched(loss, {**SOFTMAX_BUILTINS, **LOSS_BUILTINS}, z.clone(), y.clone())
        used, (m, C), want = used or seen, z.shape, variants[0][1]
        got = as_tensor(result, f"the loss of {name}")
        if got.numel() == m and m > 1:
            raise Mistake(f"{name} returns {m} values, one per example: the loss of the batch is a single number.",
                          "combine the per-example losses the way the loss is defined (section 2). " + _more(qid))
        got = expect_shape(got.reshape(()) if got.numel() == 1 else got, (), f"the loss of {name}",
                           "return a scalar: one loss for the whole batch.")
        if not torch.isfinite(got):
            raise Mistake(f"{name} {_not_finite(kind)}", _more(qid))
        what = _diagnose(got, variants, _scale_names(m, C, "the loss"), proportional=False)
        if what == "":
            continue
        shown = f"{name} on logits {tuple(z.shape)}: got {got.item():.6g}, expected {want.item():.6g}"
        if what:
            raise Mistake(f"{shown}: {what}.", _more(qid))
        expect_close(got, want, shown, _more(qid))
    forbid(used, name, WITHOUT_LOSS)
    return "matches F.cross_entropy (mean) on positive, random, large and spread-out logits, float32 and float64."


def _number(value: Any, name: str) -> float:
    """A student's numeric answer (int, float, NumPy or one-element tensor) as a float."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 or isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise Mistake(f"{name} should be a number, e.g. 1.5 or math.log(3); got {type(value).__name__}: "
                      f"{value!r:.60}.")
    return float(value)


@question("initial_loss", NOTEBOOK, answer_name="predicted_initial_loss", kind="predict", hints=(
        "With all C logits of a row equal, what probability does softmax give each class, the true one included?",
        "The loss is minus the natural log of the probability of the true class, averaged over the batch; here "
        "every example has the same probability, whatever its target."),
    reveal="-log(1/C) = log C: log 10 = 2.303 for the 10 digits.")
def check_initial_loss(predicted_initial_loss: Any) -> str:
    C, truth = 10, math.log(10)
    number = _number(predicted_initial_loss, "predicted_initial_loss")
    why = (f"with equal logits every class gets probability 1/C = {1 / C:g}, so every example's loss is "
           f"-log(1/C) = log C = {truth:.4f}, whatever the targets. A network whose first losses lie far above "
           "log C is confidently wrong from the start: look at its initialisation")
    if math.isclose(number, truth, abs_tol=0.01):
        return f"right: {why}. The next cell measures it."
    named = {1 / C: "that is the probability of each class; the loss is minus its log.",
             1.0: "that is log base 10 of 10; the loss uses the natural log (torch.log).",
             math.log2(C): "that is log base 2 (bits); the loss uses the natural log (torch.log).",
             -truth: "the sign is wrong: a probability below 1 has a negative log, and the loss is MINUS it.",
             0.0: "a loss of 0 needs probability 1 for the true class; equal logits spread it evenly.",
             C * truth: "that sums the loss over the classes; only the true class's probability enters."}
    wrong = next((w for v, w in named.items() if math.isclose(number, v, rel_tol=1e-2, abs_tol=1e-3)), "")
    raise Mistake(f"predicted {number:g}: {wrong or 'not what softmax and the loss give.'} The next cell measures "
                  "it.", _more("initial_loss"), earned=0.5,
                  credit="a prediction written down before the run")


@question("batch_loss", NOTEBOOK, kind="debug", hints=(
        "Run buggy_batch_loss next to F.cross_entropy on a small batch, then on the same batch with 1000 added to "
        "one row and subtracted from another: the loss of a row must not change when a constant is added to it.",
        "There are three bugs: which max is subtracted (the batch's or each row's), which axis the log-sum-exp "
        "sums over, and how the per-example losses are combined into the batch's loss."),
    reveal="shifted = logits - logits.amax(dim=1, keepdim=True); log_p = shifted - shifted.exp().sum(dim=1, "
        "keepdim=True).log(); return -log_p[torch.arange(len(targets)), targets].mean().")
def check_batch_loss(batch_loss: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    return _check_loss(batch_loss, "batch_loss", "batch_loss").replace("matches", "fixed: it matches", 1)


# ---------------------------------------------------------------- label smoothing

def _smoothed(one_hot: torch.Tensor, eps: float) -> torch.Tensor:
    """The smoothed targets (1 - eps) Y + eps / C of a one-hot matrix Y (m, C)."""
    return (1 - eps) * one_hot + eps / one_hot.shape[1]


def _smoothing_cases() -> list[dict]:
    """Logits, targets and smoothing eps: random, float32, large (near 1000), rows far apart, two classes, and a
    case drawn for the student."""
    g, r = case_generator(7), case_random(7)
    m, C = _drawn_size(r)
    specs = [("random", 7, 3, 0.1, torch.float64), ("random", 6, 4, 0.3, torch.float64),
             ("random", 5, 10, 0.2, torch.float32), ("large", 4, 3, 0.15, torch.float64),
             ("spread", 3, 5, 0.25, torch.float64), ("random", 5, 2, 0.4, torch.float64),
             ("random", m, C, round(r.uniform(0.05, 0.45), 2), torch.float64)]
    cases = []
    for kind, m, C, eps, dtype in specs:
        z = 3 * torch.randn(m, C, generator=g, dtype=torch.float64)
        z = z + {"large": 1000.0, "spread": torch.tensor([[1000.0], [-1000.0], [0.0]], dtype=torch.float64)}.get(
            kind, 0.0)
        z, y = z.to(dtype), torch.randint(0, C, (m,), generator=g)
        leaf = z.detach().double().clone().requires_grad_()
        F.cross_entropy(leaf, y, label_smoothing=eps).backward()
        one_hot, p = F.one_hot(y, C).double(), torch.softmax(z.double(), dim=1)
        others = (1 - eps) * one_hot + eps / (C - 1) * (1 - one_hot)
        variants = [("", leaf.grad),
                    ("the smoothing is missing: this is the gradient for the one-hot targets", (p - one_hot) / m),
                    ("it is (1 - ε) times the one-hot gradient: the part ε / C of the target, spread over every "
                     "class, has a gradient too", (1 - eps) * (p - one_hot) / m),
                    ("the ε / C every class gets is missing from the target: only (1 - ε) Y is there",
                     (p - (1 - eps) * one_hot) / m),
                    ("every class gets ε, not ε / C", (p - (1 - eps) * one_hot - eps) / m),
                    ("ε is spread over the C - 1 wrong classes; in this loss every class, the true one included, "
                     "gets ε / C", (p - others) / m),
                    (f"the softmax inside {WRONG_AXIS}",
                     (torch.softmax(z.double(), dim=0) - _smoothed(one_hot, eps)) / m),
                    ("the target is missing: the rows of the gradient sum to 0, these do not", p / m)]
        cases.append(dict(kind=kind, z=z, y=y, setting=eps, variants=variants, names=_grad_names(m, C, {}),
                          shown=f"smoothed_grad on logits {tuple(z.shape)} with eps = {eps:g}",
                          overflow=_not_finite(kind)))
    return cases


@question("smoothed_grad", NOTEBOOK, kind="implement", hints=(
        "Section 3 of the lecture differentiates -sum_k Y_k log p_k for a one-hot row Y. Which property of the "
        "row Y did the last step use, and does the smoothed row still have it?",
        "Differentiate -sum_k t_k log p_k for any row t of targets that sums to 1: dp_k/dz_j is in section 3. The "
        "result has the same form as for one-hot targets; only the row it subtracts changes. Keep the 1/m of the "
        "mean."),
    reveal="(softmax(z) - ((1 - eps) * F.one_hot(targets, C) + eps / C)) / m: P minus the smoothed targets, over m.")
def check_smoothed_grad(smoothed_grad: Callable[..., Any]) -> str:
    _grade_grad(smoothed_grad, "smoothed_grad", _smoothing_cases())
    return ("equals autograd's gradient of F.cross_entropy(z, y, label_smoothing=eps) on random, float32, large and "
            "spread-out logits, two classes included.")


FLOOR_EPS, FLOOR_C = 0.1, 10


def smoothed_floor_value(eps: float = FLOOR_EPS, C: int = FLOOR_C) -> float:
    """The smallest label-smoothed loss of one example: the entropy of its smoothed target row."""
    t = torch.full((C,), eps / C, dtype=torch.float64)
    t[0] += 1 - eps
    return -(t * t.log()).sum().item()


@question("smoothed_floor", NOTEBOOK, answer_name="predicted_floor", kind="predict", hints=(
        "At the lowest point of the loss its gradient is 0. Your smoothed_grad says what the probabilities are "
        "there.",
        "Put those probabilities into the loss -sum_k t_k log p_k: every class contributes, not only the true one. "
        "Use the natural log."),
    reveal="p = the smoothed target row (0.91 for the true class, 0.01 for the 9 others), so the floor is its "
    "entropy: -(0.91 log 0.91 + 9 * 0.01 log 0.01) = 0.500.")
def check_smoothed_floor(predicted_floor: Any) -> str:
    number, truth = _number(predicted_floor, "predicted_floor"), smoothed_floor_value()
    eps, C = FLOOR_EPS, FLOOR_C
    top, rest = 1 - eps + eps / C, eps / C
    if math.isclose(number, truth, abs_tol=0.01):
        return ("right: the gradient P - (smoothed targets) is 0 where the probabilities equal the smoothed targets, "
                "and the loss there is their entropy, above 0: a smoothed model is never pushed to certainty. The "
                "next cell measures it.")
    named = {0.0: "that is the floor for one-hot targets (approached as p -> 1, never reached); with smoothing, "
                  "p = 1 for the true class gives log 0 for the classes that keep a share ε / C of the target.",
             -math.log(top): "that is the true class's term alone; each of the other classes adds -(ε / C) log p too.",
             -top * math.log(top): "that is the true class's term alone; each of the other classes adds "
                                   "-(ε / C) log p too.",
             math.log(C): "that is the loss of equal logits (probability 1 / C each), not the lowest one.",
             -(top * math.log(top) + eps * math.log(eps)): "the other classes are lumped into one "
             "of probability ε; each has its own term with its own probability ε / C.",
             truth / math.log(2): "that is in bits (log base 2); the loss uses the natural log.",
             truth / math.log(10): "that is in log base 10; the loss uses the natural log."}
    wrong = next((w for v, w in named.items() if math.isclose(number, v, rel_tol=1e-2, abs_tol=2e-3)), "")
    raise Mistake(f"predicted {number:g}: {wrong or 'not the lowest value of this loss.'} The next cell measures it.",
                  _more("smoothed_floor"), earned=0.5, credit="a prediction written down before the run")


# ---------------------------------------------------------------- which example pushes hardest

PUSH_M, PUSH_C = 6, 5


def _push_batch_of(student_id: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits (6, 5) and targets (6,) of question largest_push for `student_id`; the checks' student stays."""
    before = student()
    set_student(student_id)
    try:
        g = case_generator(9)
        logits = 2.5 * torch.randn(PUSH_M, PUSH_C, generator=g, dtype=torch.float64)
        return logits, torch.randint(0, PUSH_C, (PUSH_M,), generator=g)
    finally:
        set_student(before)


def push_batch(student_id: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits (6, 5) and targets (6,) of question largest_push, drawn for the sheet's `student_id` (from now
    on the checks draw their cases for it too)."""
    set_student(student_id)
    return _push_batch_of(student_id)


def _push_truth(student_id: str) -> tuple[int, float, torch.Tensor]:
    """(the row with the largest sum of absolute values, that sum, each true class's probability)."""
    logits, targets = _push_batch_of(student_id)
    p = torch.softmax(logits, dim=1)
    sizes = ((p - F.one_hot(targets, PUSH_C)) / PUSH_M).abs().sum(dim=1)
    return int(sizes.argmax()), sizes.max().item(), p[torch.arange(PUSH_M), targets]


def _as_pair(value: Any) -> tuple[int, float]:
    """A (row index, number) answer as an int and a float."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Mistake(f"largest_push should be a pair (example index, sum), e.g. (0, 0.25); got "
                      f"{type(value).__name__}: {value!r:.60}.")
    index, total = value
    if isinstance(index, torch.Tensor) and index.numel() == 1:
        index = index.item()
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise Mistake(f"the first entry, the example's index, should be an int (its row, 0 to {PUSH_M - 1}); got "
                      f"{index!r:.40}.")
    if not 0 <= int(index) < PUSH_M:
        raise Mistake(f"the batch has rows 0 to {PUSH_M - 1}; {int(index)} is not one of them.")
    return int(index), _number(total, "the second entry, the sum")


@question("largest_push", NOTEBOOK, kind="concept", hints=(
        "Row i of dJ/dz is (p_i - y_i) / m. Its entry at the true class is p_{i, y_i} - 1; what do its other "
        "entries add up to, given that a row of probabilities sums to 1?",
        "So the sum of absolute values of a row depends on one printed number only, and it is largest where that "
        "number is smallest. Do not forget the mean's 1/m."),
    reveal="The row of the example whose true class has the smallest printed probability p: its absolute values "
    "sum to (1 - p) + (1 - p), divided by m = 6, i.e. 2 * (1 - p) / 6.")
def check_largest_push(largest_push: Any) -> str:
    index, total = _as_pair(largest_push)
    best, size, p_true = _push_truth(student())
    right = lambda truth: index == truth[0] and math.isclose(total, truth[1], rel_tol=1e-3, abs_tol=1e-4)
    if student() and not right((best, size)) and right(_push_truth("")):
        raise Mistake(f"right for the batch drawn without a student id, but these checks draw the batch for "
                      f"{student()!r}: set student_id = {student()!r} in the cell of imports, run the sheet again "
                      "and answer for the batch it prints.", _more("largest_push"))
    if index != best:
        why = ("that is the example the model is surest of, whose row is the smallest" if index == int(p_true.argmax())
               else "another example's true class has a smaller probability")
        raise Mistake(f"example {index} is not the one with the largest row: {why}.", _more("largest_push"))
    named = {2 * (1 - p_true[best].item()): "the 1/m of the mean is missing",
             (1 - p_true[best].item()) / PUSH_M: "only the true class's entry is counted; the other entries of the row "
                                                 "add the same amount again",
             1 - p_true[best].item(): "only the true class's entry is counted, and the 1/m of the mean is missing"}
    if not right((best, size)):
        wrong = next((w for v, w in named.items() if math.isclose(total, v, rel_tol=1e-3, abs_tol=1e-4)),
                     "not the sum of the absolute values of that row")
        raise Mistake(f"example {index} is the right one, but {total:g} is {wrong}.", _more("largest_push"),
                      earned=0.5, credit="the right example")
    return (f"example {index}: its true class has the smallest probability, and a row's absolute values sum to "
            "2 (1 - p) / m, since its other entries add up to 1 - p as well. The example the model is least sure "
            "of moves the weights most.")


# ---------------------------------------------------------------- the backward pass of softmax

def _softmax_backward_cases() -> list[tuple[torch.Tensor, torch.Tensor, list[tuple[str, torch.Tensor]]]]:
    """(logits, upstream gradient, variants) in float64; autograd's gradient first among the variants."""
    g = case_generator(5)
    cases = []
    for m, C, offset in [(5, 4, 0.0), (3, 7, 0.0), (4, 3, 1000.0)]:
        z = 2 * torch.randn(m, C, generator=g, dtype=torch.float64) + offset
        upstream = torch.randn(m, C, generator=g, dtype=torch.float64)
        leaf = z.clone().requires_grad_()
        (torch.softmax(leaf, dim=1) * upstream).sum().backward()
        p = torch.softmax(z, dim=1)
        cases.append((z, upstream, [
            ("", leaf.grad),
            ("it is p * grad_p alone, the diagonal of the softmax Jacobian: every p_k also depends on z_j for "
             "k != j, and that term is missing", p * upstream),
            ("it is p (1 - p) grad_p, the derivative of a sigmoid: softmax couples the classes of a row, so dp_k/dz_j "
             "is not 0 for k != j", p * (1 - p) * upstream),
            ("the sum over k runs over the batch (axis 0); it belongs over the classes of each row",
             p * (upstream - (upstream * p).sum(dim=0, keepdim=True))),
            ("it does not use the upstream gradient grad_p: it is the diagonal p (1 - p) of the Jacobian alone",
             p * (1 - p))]))
    return cases


@question("softmax_backward", NOTEBOOK, kind="backward", hints=(
        "Each p_k depends on every logit of its row, so dL/dz_j = sum_k (dL/dp_k)(dp_k/dz_j). Work out dp_k/dz_j "
        "for k = j and for k != j.",
        "dp_k/dz_j = p_k (1{j = k} - p_j). Put it in the sum: one term is grad_p times p, the other is p times "
        "one number per row."),
    reveal="p = softmax(z); return p * (grad_p - (grad_p * p).sum(dim=1, keepdim=True)).")
def check_softmax_backward(softmax_backward: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    cases, errors, used = _softmax_backward_cases(), [], ""
    for z, upstream, variants in cases:
        result, seen = _watched(softmax_backward, {**SOFTMAX_BUILTINS, **AUTOGRAD}, z.clone(), upstream.clone())
        used, want = used or seen, variants[0][1]
        shown = f"softmax_backward for logits {tuple(z.shape)}" + (" around 1000" if z.min() > 100 else "")
        got = expect_shape(result, tuple(z.shape), shown, "dL/dz has the shape of z.")
        if not torch.isfinite(got).all():
            raise Mistake(f"{shown} contains inf or nan for logits around 1000: exp(1000) overflows.",
                          _more("softmax_backward"))
        what = _diagnose(got, variants, {1.0: "", -1.0: "the sign is wrong"}, proportional=True)
        if what:
            raise Mistake(f"{shown}: {what}.", _more("softmax_backward"))
        if _float32(result) and _close(got, want):
            raise Mistake(f"{shown}: the right values, but in float32: the check compares in float64, where "
                          "float32's rounding alone is a relative error near 1e-7.",
                          "keep the inputs' dtype (float64): no .float() and no float32 tensors.",
                          earned=0.5, credit="the right values at float32 precision")
        errors.append(grad_check(got, want, f"{shown} (your relative error should be below 1e-7)",
                                 _more("softmax_backward")))
    forbid(used, "softmax_backward", WITHOUT_AUTOGRAD + " Your softmax from Exercise 1 gives p.")
    return (f"matches autograd in float64 on {len(cases)} cases, large logits included: relative error "
            f"{max(errors):.1e} (below 1e-7).")


# ---------------------------------------------------------------- softmax regression with class weights

def weighted_loss(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The class-weighted mean cross-entropy sum_i w[y_i] (-log p_{i, y_i}) / sum_i w[y_i], in float64."""
    return F.cross_entropy(logits.double(), y, weight=w.double())


def _weighted_cases() -> list[tuple]:
    """(W, b, X, y, w, lr, shift, loss before, dW, db, variants of dz) per case: float64 and float32, a batch of one,
    logits near 740 (b is large), and a case drawn for the student."""
    g, r = case_generator(8), case_random(8)
    drawn = (r.randint(2, 8), r.randint(2, 12), r.randint(1, 12), round(r.uniform(0.05, 1.0), 2))
    cases = []
    for C, D, m, lr, dtype, shift in [(3, 5, 8, 0.3, torch.float64, 0.0), (10, 20, 16, 0.1, torch.float32, 0.0),
                                      (4, 6, 1, 0.7, torch.float64, 0.0), (5, 7, 6, 0.5, torch.float64, 740.0),
                                      (*drawn, torch.float64, 0.0)]:
        W = (0.1 * torch.randn(C, D, generator=g, dtype=torch.float64)).to(dtype).double()
        b = (0.1 * torch.randn(C, generator=g, dtype=torch.float64) + shift).to(dtype).double()
        X = torch.randn(m, D, generator=g, dtype=torch.float64).to(dtype).double()
        y, w = torch.randint(0, C, (m,), generator=g), (0.2 + 2.8 * torch.rand(C, generator=g)).to(dtype).double()
        W_leaf, b_leaf = W.clone().requires_grad_(), b.clone().requires_grad_()
        loss = weighted_loss(X @ W_leaf.T + b_leaf, y, w)
        loss.backward()
        p, one_hot, wy = torch.softmax(X @ W.T + b, dim=1), F.one_hot(y, C).double(), w[y][:, None]
        S = wy.sum()
        dz = [("", wy * (p - one_hot) / S),
              (f"divided by the batch size m = {m}: the weighted mean divides by the sum of the targets' weights, "
               "sum_i w[y_i]", wy * (p - one_hot) / m),
              ("the class weights are missing: this is the step of the unweighted mean", (p - one_hot) / m),
              ("each column j is weighted by w[j]; every entry of example i's row carries the weight of its TRUE "
               "class, w[y_i]", (p - one_hot) * w / S),
              ("each column j is weighted by w[j] and divided by m; every entry of example i's row carries the weight "
               "of its TRUE class, w[y_i], and the mean divides by sum_i w[y_i]", (p - one_hot) * w / m),
              ("divided by the sum of all C class weights; the weighted mean divides by sum_i w[y_i], one weight per "
               "example", wy * (p - one_hot) / w.sum())]
        variants = [(what, (d.T @ X, d.sum(dim=0))) for what, d in dz]
        cases.append((W.to(dtype), b.to(dtype), X.to(dtype), y, w.to(dtype), lr, shift, loss.detach(),
                      W_leaf.grad, b_leaf.grad, variants, S.item()))
    return cases


def _weighted_step_names(S: float, lr: float, param: str) -> dict[float, str]:
    """The slips of a step, as factors of the right step -lr * dJ/dparam (S: the sum of the targets' weights)."""
    names = {1.0: "", 0.0: f"{param} did not change",
             -1.0: f"{param} moved uphill: the gradient has the wrong sign, so the loss increases",
             S: f"the step of {param} is {S:.3g} times too large: a weighted sum where the weighted mean belongs "
                "(not divided by sum_i w[y_i])",
             1 / S: f"the step of {param} is {S:.3g} times too small: divided by sum_i w[y_i] twice"}
    if lr != 1:
        names.update({1 / lr: f"the step of {param} ignores the learning rate: {param} moved by the raw gradient",
                      lr: f"the learning rate is applied twice to {param} (lr squared times the gradient)"})
    return names


@question("weighted_step", NOTEBOOK, points=2, kind="implement", hints=(
        "Start from one example's gradient with respect to its logits (section 3): how does the weight w[y_i] of "
        "its true class enter, and what does the weighted mean divide by? Then the chain rule through "
        "z = X W^T + b, as in section 4.",
        "Each example's row of dJ/dz is its one-hot gradient times the weight of its true class; the mean divides by "
        "the sum of those weights over the batch, not by m. For logits near 740 the softmax must shift them."),
    reveal="wy = w[y][:, None]; dz = wy * (P - Y) / wy.sum(); W_new = W - lr * dz.T @ X; "
    "b_new = b - lr * dz.sum(dim=0).")
def check_weighted_step(weighted_step: Callable[..., Any]) -> str:
    drops, used = [], ""
    for W, b, X, y, w, lr, shift, loss, dW, db, variants, S in _weighted_cases():
        (C, D), m = W.shape, len(X)
        result, seen = _watched(weighted_step, {**SOFTMAX_BUILTINS, **LOSS_BUILTINS, **AUTOGRAD},
                                W.clone(), b.clone(), X.clone(), y.clone(), w.clone(), lr)
        used = used or seen
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Mistake(f"weighted_step returned {type(result).__name__}; return the pair (W_new, b_new).")
        W_new = expect_shape(result[0], (C, D), "W_new", "W has shape (C, D), like nn.Linear's weight.")
        b_new = expect_shape(result[1], (C,), "b_new", "b has one entry per class, shape (C,).")
        what = f"weighted_step with W {C}x{D}, a batch of {m}, lr={lr}" + (f", logits near {shift:g}" if shift else "")
        if not (torch.isfinite(W_new).all() and torch.isfinite(b_new).all()):
            raise Mistake(f"{what}: W_new or b_new holds inf or nan" + (": exp of a logit that large overflows, so "
                          "the softmax inside the step gives inf / inf." if shift else "."),
                          "subtract each row's largest logit before exp (section 6 of the lecture): the probabilities "
                          "do not change." if shift else _more("weighted_step"))
        for k, (param, new, old, grad) in enumerate([("W", W_new, W.double(), dW), ("b", b_new, b.double(), db)]):
            steps = [(slip, -lr * v[k]) for slip, v in variants]
            slip = _diagnose(new - old, steps, _weighted_step_names(S, lr, param), proportional=True)
            if slip:
                raise Mistake(f"{what}: {slip}.", _more("weighted_step"))
            expect_close(new, old - lr * grad, f"{param}_new from {what}", _more("weighted_step"))
        drops.append((loss.item(), weighted_loss(X.double() @ W_new.T + b_new, y, w).item()))
    forbid(used, "weighted_step", WITHOUT_AUTOGRAD)
    return ("W and b follow the weighted loss's gradient; it went "
            + ", ".join(f"{a:.3f} -> {c:.3f}" for a, c in drops) + ".")


written_question("gradient_meaning", NOTEBOOK, hints=(
    "Read (P - Y) / m row by row: what sign has the true class's entry, and what sign the others? Which way does a "
    "gradient step move each logit?",
    "How large is a row when the model is confidently right, and when it is confidently wrong?"),
    reveal="Row i of (P - Y) / m is p - 1 at the true class (negative: a step raises that logit) and p_j at the "
    "others (positive: a step lowers them), each scaled by 1/m; a confidently right row is near 0 and "
    "barely moves, a confidently wrong one is near -1 / +1 and moves the most.")
written_question("why_cross_entropy", NOTEBOOK, hints=(
    "Section 8 of the lecture: compare the two gradients when the model is confidently wrong.",
    "What happens to a squared error's gradient when the softmax saturates (p near 0 for the true class)?"),
    reveal="With cross-entropy the gradient is p - y, large exactly when the model is confidently wrong; a "
    "squared error's gradient carries the softmax's derivative p(1 - p), which vanishes when p is near 0 "
    "for the true class, so learning stalls where it is most needed.")
