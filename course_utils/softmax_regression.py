"""Softmax, cross-entropy and its gradient written out by hand, and softmax regression trained with them.

For logits z (m, C), targets y (m,) and the one-hot matrix Y (m, C):

    p = softmax(z),  p_ij = exp(z_ij - max_k z_ik) / sum_k exp(z_ik - max_k z_ik)
    J = -(1/m) sum_i log p_{i, y_i}                       (mean cross-entropy)
    dJ/dz_ij = (p_ij - 1{y_i = j}) / m,   i.e.  dJ/dz = (p - Y) / m
    softmax regression z = X W^T + b:  dJ/dW = (dJ/dz)^T X  (C, D),  dJ/db = sum_i dJ/dz_i  (C,)
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .data import MNISTData
from .device import seed_everything
from .training import History, batches


def _check_logits(logits: torch.Tensor, targets: torch.Tensor | None = None) -> None:
    """Raise a ValueError unless logits are (m, C) and targets (m,) integers in [0, C)."""
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (m, C), got {tuple(logits.shape)}; "
                         "for one example use logits[None].")
    if targets is not None and (targets.shape != logits.shape[:1] or targets.is_floating_point()):
        raise ValueError(f"targets must be integer class indices of shape ({logits.shape[0]},), got "
                         f"{targets.dtype} {tuple(targets.shape)}; use labels.long(), not one-hot rows.")


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax of logits (m, C), stable for any logit size: subtract each row's max first."""
    _check_logits(logits)
    e = torch.exp(logits - logits.amax(dim=1, keepdim=True))
    return e / e.sum(dim=1, keepdim=True)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log p for logits (m, C) by log-sum-exp: z_ij - max_k z_ik - log sum_k exp(z_ik - max_k z_ik)."""
    _check_logits(logits)
    shifted = logits - logits.amax(dim=1, keepdim=True)
    return shifted - shifted.exp().sum(dim=1, keepdim=True).log()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy J = -(1/m) sum_i log p_{i, y_i} for logits (m, C) and targets (m,); a scalar."""
    _check_logits(logits, targets)
    return -log_softmax(logits).gather(1, targets[:, None]).mean()


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """dJ/dz = (softmax(z) - one_hot(y)) / m for the mean cross-entropy; shape (m, C)."""
    _check_logits(logits, targets)
    one_hot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
    return (softmax(logits) - one_hot) / logits.shape[0]


class HandCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy whose backward is the hand-derived `cross_entropy_grad` (for gradcheck)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, targets)
        return cross_entropy(logits, targets)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, targets = ctx.saved_tensors
        return grad_output * cross_entropy_grad(logits, targets), None


def softmax_regression_grads(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor,
                             y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss and hand gradients of softmax regression z = X W^T + b: W (C, D), b (C,), X (m, D), y (m,).

    Returns (J, dJ/dW (C, D), dJ/db (C,)), with dJ/dW = (dJ/dz)^T X and dJ/db = column sums of dJ/dz.
    """
    if X.dim() != 2 or W.shape != (b.shape[0], X.shape[1]):
        raise ValueError(f"expected W (C, D), b (C,), X (m, D); got W {tuple(W.shape)}, b {tuple(b.shape)}, "
                         f"X {tuple(X.shape)}. Flatten images first: X.flatten(1).")
    logits = X @ W.T + b
    dz = cross_entropy_grad(logits, y)
    return cross_entropy(logits, y), dz.T @ X, dz.sum(dim=0)


class HandSoftmaxRegression(torch.autograd.Function):
    """Softmax-regression loss J(W, b; X, y) whose backward is `softmax_regression_grads` (for gradcheck)."""

    @staticmethod
    def forward(ctx, W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss, dW, db = softmax_regression_grads(W, b, X, y)
        ctx.save_for_backward(dW, db)
        return loss

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        dW, db = ctx.saved_tensors
        return grad_output * dW, grad_output * db, None, None


def sgd_step(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
             lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One gradient-descent step of softmax regression on the batch (X, y): W - lr dJ/dW, b - lr dJ/db."""
    _, dW, db = softmax_regression_grads(W, b, X, y)
    return W - lr * dW, b - lr * db


def accuracy(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of X (m, D) whose largest logit X W^T + b is the true class."""
    return ((X @ W.T + b).argmax(dim=1) == y).float().mean().item()


def train_softmax_regression(data: MNISTData, W: torch.Tensor, b: torch.Tensor, epochs: int,
                             lr: float, batch_size: int = 128, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, History]:
    """Train W (10, 784), b (10,) with `sgd_step` alone (no autograd), batches shuffled exactly as `fit` does.

    Runs on W's device; epoch_seconds include no evaluation, as in `fit`.
    Returns the trained (W, b) and a History like `fit`'s (training accuracy counted during the epoch).
    """
    X, X_test = data.X_train.flatten(1).to(W), data.X_test.flatten(1).to(W)
    y, y_test = data.y_train.to(W.device), data.y_test.to(W.device)
    generator, history = seed_everything(seed), History()
    for _ in range(epochs):
        start, losses, correct = time.perf_counter(), [], 0
        for Xb, yb in batches(X, y, batch_size, generator):
            logits = Xb @ W.T + b
            losses.append(cross_entropy(logits, yb).item())
            correct += (logits.argmax(dim=1) == yb).sum().item()
            W, b = sgd_step(W, b, Xb, yb, lr)
        history.epoch_seconds.append(time.perf_counter() - start)
        history.step_loss += losses
        history.train_loss.append(sum(losses) / len(losses))
        history.train_acc.append(correct / len(X))
        history.test_loss.append(cross_entropy(X_test @ W.T + b, y_test).item())
        history.test_acc.append(accuracy(W, b, X_test, y_test))
    return W, b, history
