"""Questions of notebook 02 (cross-entropy): softmax, the loss, its gradient, one step of softmax regression."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from .. import softmax_regression as ref
from . import Mistake, question
from .tools import as_tensor, expect_close, expect_shape

NOTEBOOK = "02_cross_entropy_derivation"
OVERFLOW = ("gives inf or nan for logits around 1000: exp(1000) overflows.",
            "subtract each row's max before exp (softmax does not change when you shift a row).")
ROW_MAX = ("gives inf or nan when the rows lie far apart (around 1000, -1000 and 0): the max of the whole "
           "batch is too far from some rows.", "subtract each row's own max: z.amax(dim=1, keepdim=True).")
WRONG_AXIS = ("normalises over the batch (axis 0) instead of over the classes.",
              "sum over the last axis, dim=1 (or -1), with keepdim=True so that it broadcasts.")


def _logit_cases() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(kind, logits (m, C), targets (m,)) with m != C, float64 and float32, large and spread-out logits."""
    g = torch.Generator().manual_seed(2)
    z = lambda m, c, dtype=torch.float64: (3 * torch.randn(m, c, generator=g, dtype=torch.float64)).to(dtype)
    y = lambda m, c: torch.randint(0, c, (m,), generator=g)
    return [("random", z(6, 4), y(6, 4)), ("random", z(5, 10, torch.float32), y(5, 10)),
            ("large", z(4, 3) + 1000, y(4, 3)),
            ("spread", z(3, 5) + torch.tensor([[1000.0], [-1000.0], [0.0]], dtype=torch.float64), y(3, 5))]


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and bool(torch.allclose(got, want.double(), atol=1e-5, rtol=1e-4))


def _not_finite(kind: str, name: str) -> Mistake:
    """The Mistake for a result with inf or nan on logits of the given kind."""
    what, hint = {"large": OVERFLOW, "spread": ROW_MAX}.get(kind, ("gives inf or nan on ordinary logits.", ""))
    return Mistake(f"{name} {what}", hint)


@question("softmax", NOTEBOOK)
def check_softmax(softmax: Callable[[torch.Tensor], Any]) -> str:
    for kind, z, _ in _logit_cases():
        want = torch.softmax(z.double(), dim=1)
        got = expect_shape(softmax(z.clone()), tuple(z.shape), f"softmax of logits {tuple(z.shape)}",
                           "softmax keeps the shape (N, C): one probability per class per row.")
        if not torch.isfinite(got).all():
            raise _not_finite(kind, "softmax")
        if _close(got, want):
            continue
        if _close(got, torch.softmax(z.double(), dim=0)):
            raise Mistake(f"softmax {WRONG_AXIS[0]} Its columns sum to 1, the rows should.", WRONG_AXIS[1])
        if not _close(got.sum(dim=1), torch.ones(len(z))):
            raise Mistake(f"the rows of softmax({tuple(z.shape)} logits) sum to {got.sum(dim=1).tolist()}, not 1.",
                          "divide exp(z) by its sum over each row.")
        expect_close(got, want, f"softmax of logits {tuple(z.shape)}", "p_ij = exp(z_ij) / sum_k exp(z_ik).")
    return "matches torch.softmax on random, large (around 1000) and spread-out logits, float32 and float64."


@question("cross_entropy", NOTEBOOK)
def check_cross_entropy(cross_entropy: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    for kind, z, y in _logit_cases():
        m, want = len(z), F.cross_entropy(z.double(), y)
        got = as_tensor(cross_entropy(z.clone(), y.clone()), "the loss")
        if got.numel() == m and m > 1:
            raise Mistake(f"the loss has {m} values, one per example: the mean is a single number.",
                          "average the per-example losses: .mean().")
        got = expect_shape(got.reshape(()) if got.numel() == 1 else got, (), "the loss", "return a scalar.")
        if not torch.isfinite(got):
            raise _not_finite(kind, "cross_entropy")
        what = f"cross_entropy on logits {tuple(z.shape)}: got {got.item():.6g}, expected {want.item():.6g}"
        if _close(got, want):
            continue
        if _close(got, m * want):
            raise Mistake(f"{what}, {m} times too large: a sum where the mean belongs.",
                          "divide by the batch size: J = -(1/m) sum_i log p_(i, y_i).")
        if _close(got, -want):
            raise Mistake(f"{what}: the sign is wrong.", "the loss is MINUS the log-probability of the true class.")
        if _close(got, -torch.log_softmax(z.double(), dim=0)[torch.arange(m), y].mean()):
            raise Mistake(f"{what}: the softmax inside {WRONG_AXIS[0]}", WRONG_AXIS[1])
        expect_close(got, want, what, "J = -(1/m) sum_i log p_(i, y_i), with p the row-wise softmax.")
    return "matches F.cross_entropy (mean) on random, large and spread-out logits, float32 and float64."


@question("cross_entropy_grad", NOTEBOOK)
def check_cross_entropy_grad(cross_entropy_grad: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    for kind, z, y in _logit_cases():
        logits = z.detach().double().clone().requires_grad_()
        F.cross_entropy(logits, y).backward()
        m, want = len(z), logits.grad
        got = expect_shape(cross_entropy_grad(z.clone(), y.clone()), tuple(z.shape),
                           f"the gradient for logits {tuple(z.shape)}", "dJ/dz has the shape of z.")
        if not torch.isfinite(got).all():
            raise _not_finite(kind, "cross_entropy_grad")
        if _close(got, want):
            continue
        one_hot = F.one_hot(y, z.shape[1]).double()
        slips = [(-want, "the sign is wrong: that is -dJ/dz.", "dJ/dz = (p - Y) / m: probability minus one-hot."),
                 (m * want, f"{m} times too large: the batch size is not divided out.",
                  "the loss is a mean over the m examples, so each row of dJ/dz carries a factor 1/m."),
                 (-m * want, f"the sign is wrong and it is {m} times too large.", "dJ/dz = (p - Y) / m."),
                 ((torch.softmax(z.double(), dim=0) - one_hot) / m, f"the softmax inside {WRONG_AXIS[0]}",
                  WRONG_AXIS[1]),
                 (torch.softmax(z.double(), dim=1) / m, "the one-hot of the true class is missing.",
                  "subtract 1 at the true class of each row: (p - Y) / m.")]
        for value, what, hint in slips:
            if _close(got, value):
                raise Mistake(f"cross_entropy_grad on logits {tuple(z.shape)}: {what}", hint)
        expect_close(got, want, f"the gradient for logits {tuple(z.shape)} (compared with autograd)",
                     "dJ/dz_ij = (p_ij - 1{y_i = j}) / m.")
    return "equals autograd's gradient of F.cross_entropy on random, large and spread-out logits."


@question("sgd_step", NOTEBOOK, points=2)
def check_sgd_step(sgd_step: Callable[..., Any]) -> str:
    g = torch.Generator().manual_seed(4)
    drops = []
    for C, D, m, lr, dtype in [(3, 5, 8, 0.5, torch.float64), (10, 20, 16, 0.1, torch.float32), (4, 6, 5, 1.0, torch.float64)]:
        W, b = 0.1 * torch.randn(C, D, generator=g), 0.1 * torch.randn(C, generator=g)
        X, y = torch.randn(m, D, generator=g), torch.randint(0, C, (m,), generator=g)
        W, b, X = W.to(dtype), b.to(dtype), X.to(dtype)
        result = sgd_step(W.clone(), b.clone(), X.clone(), y.clone(), lr)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Mistake(f"sgd_step returned {type(result).__name__}; return the pair (W_new, b_new).")
        W_new = expect_shape(result[0], (C, D), "W_new", "W has shape (C, D), like nn.Linear's weight.")
        b_new = expect_shape(result[1], (C,), "b_new")
        loss, dW, db = ref.softmax_regression_grads(W.double(), b.double(), X.double(), y)
        W, b = W.double(), b.double()
        what = f"sgd_step with W {C}x{D}, a batch of {m}, lr={lr}"
        slips = [(W, "W did not change.", "return W - lr * dJ/dW, where dJ/dW = (dJ/dz)^T X."),
                 (W + lr * dW, "W moved uphill: the gradient has the wrong sign, so the loss increases.",
                  "dJ/dz = (p - Y) / m, and the step subtracts lr times the gradient."),
                 (W - lr * m * dW, f"the step is {m} times too large: a sum over the batch where the mean "
                  "belongs (the batch size is not divided out).", "dJ/dz = (p - Y) / m.")]
        for value, mistake, hint in slips:
            if not _close(W_new, W - lr * dW) and _close(W_new, value):
                raise Mistake(f"{what}: {mistake}", hint)
        expect_close(W_new, W - lr * dW, f"W_new from {what}", "dJ/dW = (dJ/dz)^T X, shape (C, D).")
        if _close(b_new, b):
            raise Mistake(f"{what}: b did not change.", "b_new = b - lr * dJ/db, with dJ/db = dJ/dz summed over the batch.")
        expect_close(b_new, b - lr * db, f"b_new from {what}", "dJ/db = dJ/dz summed over the batch, shape (C,).")
        drops.append((loss.item(), ref.cross_entropy(X.double() @ W_new.T + b_new, y).item()))
    return "W and b follow the hand gradient; the loss went " + ", ".join(f"{a:.3f} -> {c:.3f}" for a, c in drops) + "."
