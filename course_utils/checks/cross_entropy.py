"""Questions of notebook 02 (cross-entropy): softmax, the loss, its gradients, one step of softmax regression.

The implement, debug and backward questions run the student's code inside `tools.Watch`, which sees
the built-ins the sheet forbids even through a wrapper: the softmax family (torch.softmax, F.softmax
and nn.Softmax, Tensor.softmax, torch.special.softmax, and the log_softmax of each), the losses
(F.cross_entropy and nn.CrossEntropyLoss, F.nll_loss and nn.NLLLoss) and autograd (Tensor.backward,
torch.autograd.backward, torch.autograd.grad, which torch.func and torch.autograd.functional reach).
Values are diagnosed first (a wrapper with the wrong axis hears about the axis), the built-in last.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import softmax_regression as ref
from . import Mistake, question, written_question
from .tools import case_generator
from .tools import Watch, as_tensor, calling, expect_choice, expect_close, expect_shape, forbid, grad_check

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
WITHOUT_SOFTMAX = ("use torch.exp, .amax(dim=1, keepdim=True) and .sum(dim=1, keepdim=True); torch.logsumexp is "
                   "allowed, and so is your own softmax from Exercise 1.")
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


def _logit_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(kind, logits (m, C), targets (m,)) with m != C: positive, random float64 and float32, large, spread out."""
    g = case_generator(2)
    z = lambda m, c, dtype=torch.float64: (3 * torch.randn(m, c, generator=g, dtype=torch.float64)).to(dtype)
    y = lambda m, c: torch.randint(0, c, (m,), generator=g)
    positive = 0.2 + 2 * torch.rand(7, 3, generator=g, dtype=torch.float64)
    return [("positive", positive, y(7, 3)), ("random", z(6, 4), y(6, 4)),
            ("random", z(5, 10, torch.float32), y(5, 10)), ("large", z(4, 3) + 1000, y(4, 3)),
            ("spread", z(3, 5) + torch.tensor([[1000.0], [-1000.0], [0.0]], dtype=torch.float64), y(3, 5))]


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
    for what, value in variants:
        scale = _named(_factor(got, value), names)
        if scale is not None:
            return "; and it is ".join(w for w in (what, scale) if w)
    s = _factor(got, variants[0][1]) if proportional else None
    if s is not None and abs(s) > 1e-6:
        return f"it is {s:.4g} times the right one: the direction is right, a constant factor slipped in"
    return None


def _row_shifted_exp(z: torch.Tensor) -> torch.Tensor:
    """exp(z - each row's max), in float64."""
    z = z.double()
    return torch.exp(z - z.amax(dim=1, keepdim=True))


def _watched(answer: Callable[..., Any], forbidden: dict, *args: Any) -> tuple[Any, str]:
    """Call the student's answer inside a Watch; return its result and the forbidden built-ins it used."""
    with Watch(forbidden) as watch, calling(getattr(answer, "__name__", "your function"), *args):
        result = answer(*args)
    return result, watch.used


def _float32(result: Any) -> bool:
    """Whether a torch or NumPy result is float32."""
    return str(getattr(result, "dtype", "")) in ("torch.float32", "float32")


# ---------------------------------------------------------------- softmax

@question("softmax", NOTEBOOK, kind="implement", hints=(
        "Softmax works on each row (one example) separately, over the classes: which axis is that, and what must "
        "each row of the result sum to?",
        "exp overflows above about 88 (float32) or 709 (float64). Section 1 of the lecture: adding the same number "
        "to a whole row does not change its softmax. Which number makes the row's largest exponent 0?"),
    reveal="e = torch.exp(z - z.amax(dim=1, keepdim=True)); return e / e.sum(dim=1, keepdim=True).")
def check_softmax(softmax: Callable[[torch.Tensor], Any]) -> str:
    cases = [(kind, z, torch.softmax(z.double(), dim=1)) for kind, z, _ in _logit_cases()]
    used = ""
    for kind, z, want in cases:
        result, seen = _watched(softmax, SOFTMAX_BUILTINS, z.clone())
        used = used or seen
        got = expect_shape(result, tuple(z.shape), f"softmax of logits {tuple(z.shape)}",
                           "softmax keeps the shape (m, C): one probability per class per row.")
        if not torch.isfinite(got).all():
            raise Mistake(f"softmax {_not_finite(kind)}", _more("softmax"))
        if _close(got, want):
            continue
        zd = z.double()
        axis = f"it {WRONG_AXIS}: its columns sum to 1, the rows should."
        named = [(torch.softmax(zd, dim=0), axis), (_row_shifted_exp(zd) / _row_shifted_exp(zd).sum(dim=0), axis),
                 (zd / zd.sum(dim=1, keepdim=True), "it divides the logits by their row sum: the exponential is "
                                                    "missing, and a negative logit would give a negative probability."),
                 (torch.log_softmax(zd, dim=1), "these are log-probabilities (all <= 0, their exp sums to 1 per "
                                                "row): the exp of them is the softmax."),
                 (torch.softmax(torch.softmax(zd, dim=1), dim=1), "it is a softmax of a softmax: applied twice, "
                                                                  "it flattens the probabilities.")]
        for value, what in named:
            if _close(got, value):
                raise Mistake(f"softmax of logits {tuple(z.shape)}: {what}", _more("softmax"))
        if (got < 0).any():
            raise Mistake(f"softmax of logits {tuple(z.shape)} has negative entries: probabilities are positive, "
                          "so the exponential is missing somewhere.", _more("softmax"))
        if not _close(got.sum(dim=1), torch.ones(len(z))):
            raise Mistake(f"the rows of softmax({tuple(z.shape)} logits) sum to "
                          f"{[round(s, 4) for s in got.sum(dim=1).tolist()]}, not 1: the normalisation is missing "
                          "or divides by the wrong sum.", _more("softmax"))
        expect_close(got, want, f"softmax of logits {tuple(z.shape)}", _more("softmax"))
    forbid(used, "softmax", WITHOUT_SOFTMAX)
    return "matches torch.softmax on positive, random, large (around 1000) and spread-out logits, float32 and float64."


SHIFT_OPTIONS = {
    "a": "right: e^(z_j + c) = e^c e^(z_j), and the factor e^c is in every term of the sum below too, so it "
         "cancels. That is why subtracting each row's max is free: it changes nothing but the size of the exponents.",
    "b": "the numerator is multiplied by e^c, but so is every term of the denominator, and the factor cancels; "
         "if every probability were multiplied by e^c the row could no longer sum to 1.",
    "c": "that is what MULTIPLYING the logits by a number above 1 does (a lower temperature). Adding c keeps every "
         "difference z_j - z_k, and softmax depends only on those differences.",
    "d": "the probabilities of a row always sum to 1, so they cannot all grow; and softmax is not linear in the "
         "logits, so nothing is added to the probabilities.",
}


@question("shift_logits", NOTEBOOK, answer_name="shift_choice", kind="concept", hints=(
        "Write one probability out: e^(z_j + c) / sum_k e^(z_k + c). What can you take out of the top and "
        "out of the bottom?",
        "Softmax depends only on the differences z_j - z_k between the logits of a row: does adding c change them?"),
    reveal="(a): e^(z_j + c) = e^c e^(z_j), and e^c is a factor of every term of the sum below too, so it "
    "cancels: the probabilities do not change.")
def check_shift_logits(shift_choice: Any) -> str:
    return expect_choice(shift_choice, SHIFT_OPTIONS, "a", "shift_choice", "run hint('shift_logits').")


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


@question("cross_entropy", NOTEBOOK, kind="implement", hints=(
        "The loss is one number for the batch: for each example, minus the log of the probability its true class "
        "gets, then combined over the examples as section 2 defines it.",
        "log(softmax(z)) gives log 0 = -inf when a probability underflows; section 6 writes log p with log-sum-exp, "
        "so that nothing overflows or underflows (torch.logsumexp is allowed). Pick each row's true class by "
        "indexing log_p with the row numbers and the targets together."),
    reveal="s = z - z.amax(dim=1, keepdim=True); log_p = s - s.exp().sum(dim=1, keepdim=True).log(); "
        "J = -log_p[torch.arange(len(targets)), targets].mean().")
def check_cross_entropy(cross_entropy: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    return _check_loss(cross_entropy, "cross_entropy", "cross_entropy")


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
    raise Mistake(f"predicted {number:g}: {wrong or 'not what softmax and the loss give.'} In fact {why}. The next "
                  "cell measures it.", _more("initial_loss"), earned=0.5,
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


# ---------------------------------------------------------------- gradients

@question("cross_entropy_grad", NOTEBOOK, kind="implement", hints=(
        "Section 3 of the lecture derives dJ/dz for one example; what changes when J is the mean over m examples?",
        "For one example, dJ/dz_j is the probability of class j, minus 1 at the true class; each row of the "
        "gradient sums to 0. Build the targets' one-hot matrix (torch.nn.functional has "
        "a function for it, or use indexing)."),
    reveal="(softmax(z) - F.one_hot(targets, C)) / m, with the stable softmax of Exercise 1.")
def check_cross_entropy_grad(cross_entropy_grad: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    cases = []
    for kind, z, y in _logit_cases():
        logits = z.detach().double().clone().requires_grad_()
        F.cross_entropy(logits, y).backward()
        one_hot, m = F.one_hot(y, z.shape[1]).double(), len(z)
        variants = [("", logits.grad),
                    (f"the softmax inside {WRONG_AXIS}", (torch.softmax(z.double(), dim=0) - one_hot) / m),
                    (f"the softmax inside {WRONG_AXIS}",
                     (_row_shifted_exp(z) / _row_shifted_exp(z).sum(dim=0) - one_hot) / m),
                    ("the one-hot of the true class is missing: the gradient's rows sum to 0 (probabilities and the "
                     "one-hot both sum to 1), these do not", torch.softmax(z.double(), dim=1) / m)]
        cases.append((kind, z, y, variants))
    used = ""
    for kind, z, y, variants in cases:
        result, seen = _watched(cross_entropy_grad, {**SOFTMAX_BUILTINS, **LOSS_BUILTINS, **AUTOGRAD},
                                z.clone(), y.clone())
        used = used or seen
        got = expect_shape(result, tuple(z.shape), f"the gradient for logits {tuple(z.shape)}",
                           "dJ/dz has the shape of z: one entry per logit.")
        if not torch.isfinite(got).all():
            raise Mistake(f"cross_entropy_grad {_not_finite(kind)}", _more("cross_entropy_grad"))
        what = _diagnose(got, variants, _scale_names(*z.shape, "the gradient"), proportional=True)
        if what == "":
            continue
        shown = f"cross_entropy_grad on logits {tuple(z.shape)}"
        if what:
            raise Mistake(f"{shown}: {what}.", _more("cross_entropy_grad"))
        rows = got.sum(dim=1)
        if not _close(rows, torch.zeros(len(z))):
            raise Mistake(f"{shown}: its rows sum to {[round(r, 4) for r in rows.tolist()]}, where a gradient of "
                          "this loss sums to 0 over the classes of each row.", _more("cross_entropy_grad"))
        expect_close(got, variants[0][1], f"{shown} (compared with autograd)", _more("cross_entropy_grad"))
    forbid(used, "cross_entropy_grad", WITHOUT_AUTOGRAD)
    return "equals autograd's gradient of F.cross_entropy on positive, random, large and spread-out logits."


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


# ---------------------------------------------------------------- softmax regression

def _step_names(m: int, lr: float, param: str) -> dict[float, str]:
    """The slips of a gradient step, as factors of the right step -lr * dJ/dparam."""
    names = {1.0: "", 0.0: f"{param} did not change",
             -1.0: f"{param} moved uphill: the gradient has the wrong sign, so the loss increases",
             m: f"the step of {param} is {m} times too large: a sum over the batch where the mean belongs (the batch "
                "size is not divided out)",
             1 / m: f"the step of {param} is {m} times too small: divided by the batch size m twice (dJ/dz already "
                    "carries the 1/m of the mean)"}
    if lr != 1:
        names.update({1 / lr: f"the step of {param} ignores the learning rate: {param} moved by the raw gradient",
                      lr: f"the learning rate is applied twice to {param} (lr squared times the gradient)"})
    return names


@question("sgd_step", NOTEBOOK, points=2, kind="implement", hints=(
        "Get dJ/dz first (Exercise 6), then the chain rule through z = X W^T + b (section 4): dJ/dW has W's shape "
        "(C, D), dJ/db b's shape (C,).",
        "dJ/dz already carries the 1/m of the mean: do not divide again. A step goes downhill: it subtracts lr times "
        "the gradient."),
    reveal="dz = (P - Y) / m; W_new = W - lr * dz.T @ X; b_new = b - lr * dz.sum(dim=0).")
def check_sgd_step(sgd_step: Callable[..., Any]) -> str:
    g = case_generator(4)
    cases = []
    # the last case's logits lie near 740 (b is large): exp overflows there unless the softmax shifts them
    for C, D, m, lr, dtype, shift in [(3, 5, 8, 0.3, torch.float64, 0.0), (10, 20, 16, 0.1, torch.float32, 0.0),
                                      (4, 6, 5, 1.0, torch.float64, 0.0), (5, 7, 6, 0.5, torch.float64, 740.0)]:
        W, b = 0.1 * torch.randn(C, D, generator=g), 0.1 * torch.randn(C, generator=g) + shift
        X, y = torch.randn(m, D, generator=g), torch.randint(0, C, (m,), generator=g)
        W, b, X = W.to(dtype), b.to(dtype), X.to(dtype)
        loss, dW, db = ref.softmax_regression_grads(W.double(), b.double(), X.double(), y)
        cases.append((W, b, X, y, lr, loss, dW, db, shift))
    drops, used = [], ""
    for W, b, X, y, lr, loss, dW, db, shift in cases:
        (C, D), m = W.shape, len(X)
        result, seen = _watched(sgd_step, {**SOFTMAX_BUILTINS, **LOSS_BUILTINS, **AUTOGRAD},
                                W.clone(), b.clone(), X.clone(), y.clone(), lr)
        used = used or seen
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Mistake(f"sgd_step returned {type(result).__name__}; return the pair (W_new, b_new).")
        W_new = expect_shape(result[0], (C, D), "W_new", "W has shape (C, D), like nn.Linear's weight.")
        b_new = expect_shape(result[1], (C,), "b_new", "b has one entry per class, shape (C,).")
        what = f"sgd_step with W {C}x{D}, a batch of {m}, lr={lr}" + (f", logits near {shift:g}" if shift else "")
        if shift and not (torch.isfinite(W_new).all() and torch.isfinite(b_new).all()):
            raise Mistake(f"{what}: W_new or b_new holds inf or nan: exp of a logit that large overflows, so the "
                          "softmax inside the step gives inf / inf.", "subtract each row's largest logit before exp, "
                          "as in your softmax (section 1 of the lecture): the probabilities do not change.")
        for param, new, old, grad in [("W", W_new, W.double(), dW), ("b", b_new, b.double(), db)]:
            slip = _diagnose(new - old, [("", -lr * grad)], _step_names(m, lr, param), proportional=True)
            if slip:
                raise Mistake(f"{what}: {slip}.", _more("sgd_step"))
            expect_close(new, old - lr * grad, f"{param}_new from {what}", _more("sgd_step"))
        drops.append((loss.item(), ref.cross_entropy(X.double() @ W_new.T + b_new, y).item()))
    forbid(used, "sgd_step", WITHOUT_AUTOGRAD)
    return "W and b follow the hand gradient; the loss went " + ", ".join(f"{a:.3f} -> {c:.3f}" for a, c in drops) + "."


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
