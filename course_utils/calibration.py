"""Is a confidence a probability? Reliability bins, expected calibration error, temperature scaling.

The confidence of a prediction is its largest softmax probability. A classifier is *calibrated*
when, among the predictions made with confidence about c, a fraction c is right.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes


@dataclass(frozen=True)
class ReliabilityBins:
    """Predictions grouped by confidence into equal-width bins (lo, hi] of [0, 1]."""

    edges: torch.Tensor        # (B + 1,) bin edges 0, 1/B, ..., 1
    count: torch.Tensor        # (B,) predictions per bin
    confidence: torch.Tensor   # (B,) mean confidence per bin (nan where empty)
    accuracy: torch.Tensor     # (B,) fraction right per bin (nan where empty)


def _check(probs: torch.Tensor, y: torch.Tensor) -> None:
    if probs.ndim != 2 or y.shape != probs.shape[:1]:
        raise ValueError(f"expected probabilities (N, C) and labels (N,), got {tuple(probs.shape)} and "
                         f"{tuple(y.shape)}; pass F.softmax(logits, dim=1) and the true classes.")
    if len(y) == 0:
        raise ValueError("no predictions to bin: pass at least one example.")


def reliability_bins(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 10) -> ReliabilityBins:
    """Bin the confidences max_k probs[i, k] into `n_bins` bins; per bin its size, mean confidence, accuracy."""
    _check(probs, y)
    confidence, pred = probs.detach().cpu().double().max(dim=1)
    correct = (pred == y.cpu()).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    index = (torch.bucketize(confidence, edges, right=False) - 1).clamp(0, n_bins - 1)   # (lo, hi]
    count = torch.bincount(index, minlength=n_bins)
    per_bin = lambda values: torch.bincount(index, values, minlength=n_bins) / count     # nan where empty
    return ReliabilityBins(edges, count, per_bin(confidence), per_bin(correct))


def expected_calibration_error(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 10) -> float:
    """ECE = sum over bins of (n_b / N) * |accuracy_b - mean confidence_b|, in [0, 1]."""
    bins = reliability_bins(probs, y, n_bins)
    filled = bins.count > 0
    gaps = (bins.accuracy[filled] - bins.confidence[filled]).abs()
    return (bins.count[filled] / bins.count.sum() * gaps).sum().item()


def _loss_slope(logits: torch.Tensor, y: torch.Tensor, beta: float) -> float:
    """d/dbeta of the mean cross-entropy of softmax(beta * logits): mean of E_p[z] - z_y."""
    p = F.softmax(beta * logits, dim=1)                                      # (N, C)
    return ((p * logits).sum(1) - logits.gather(1, y[:, None]).squeeze(1)).mean().item()


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, low: float = 1e-3, high: float = 1e3) -> float:
    """The T in [low, high] that minimises the mean cross-entropy of softmax(logits / T) on (logits (N, C), y (N,)).

    The loss is convex in beta = 1 / T, so its slope grows with beta: bisect (in log space) for slope 0.
    """
    _check(logits, y)
    logits, y = logits.detach().cpu().double(), y.cpu()
    lo, hi = torch.tensor([1 / high, 1 / low]).log().tolist()                # log beta
    if _loss_slope(logits, y, math.exp(hi)) <= 0:
        raise ValueError(f"the loss still falls at T = {low}: every example is right with a margin, so "
                         "the best temperature is 0. Fit it on held-out data the model gets partly wrong.")
    for _ in range(60):                                                  # width 13.8 / 2**60
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _loss_slope(logits, y, math.exp(mid)) < 0 else (lo, mid)
    return math.exp(-(lo + hi) / 2)


def _bootstrap_weights(n: int, n_boot: int, seed: int) -> torch.Tensor:
    """(n_boot, n) float64 counts: how often each of n examples is drawn in each resample with replacement."""
    draws = torch.randint(0, n, (n_boot, n), generator=torch.Generator().manual_seed(seed))
    return torch.zeros(n_boot, n, dtype=torch.float64).scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))


def _weighted_ece(probs: torch.Tensor, y: torch.Tensor, n_bins: int, weights: torch.Tensor) -> torch.Tensor:
    """ECE under per-example weights (R, N): (1 / Σw) Σ_bins |Σ_{i in bin} w_i (correct_i − confidence_i)|."""
    confidence, pred = probs.detach().cpu().double().max(dim=1)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    index = (torch.bucketize(confidence, edges, right=False) - 1).clamp(0, n_bins - 1)
    gap = (pred == y.cpu()).double() - confidence                                   # (N,)
    per_bin = (weights * gap) @ F.one_hot(index, n_bins).double()                    # (R, B)
    return per_bin.abs().sum(1) / weights.sum(1)


def bootstrap_ece(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 10, n_boot: int = 1000,
                  seed: int = 0) -> tuple[float, float]:
    """(ECE, its bootstrap standard error): the ECE recomputed on `n_boot` resamples of the predictions."""
    _check(probs, y)
    draws = _weighted_ece(probs, y, n_bins, _bootstrap_weights(len(y), n_boot, seed))
    return expected_calibration_error(probs, y, n_bins), draws.std().item()


def bootstrap_ece_change(probs_before: torch.Tensor, probs_after: torch.Tensor, y: torch.Tensor,
                         n_bins: int = 10, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(ECE after − ECE before, its paired bootstrap standard error): both scored on the same resampled digits."""
    _check(probs_before, y), _check(probs_after, y)
    weights = _bootstrap_weights(len(y), n_boot, seed)
    draws = _weighted_ece(probs_after, y, n_bins, weights) - _weighted_ece(probs_before, y, n_bins, weights)
    change = expected_calibration_error(probs_after, y, n_bins) - expected_calibration_error(probs_before, y, n_bins)
    return change, draws.std().item()


def temperature_se(logits: torch.Tensor, y: torch.Tensor, T: float) -> float:
    """Standard error of a fitted T (sandwich / delta method): β = 1/T solves mean s_i(β) = 0.

    s_i = E_p[z] − z_y is each example's slope of the loss in β and its derivative is Var_p(z), so
    se(β) = sd(s_i) / (√N · mean Var_p(z)) and se(T) = se(β) / β².
    """
    _check(logits, y)
    z, y, beta = logits.detach().cpu().double(), y.cpu(), 1 / T
    p = F.softmax(beta * z, dim=1)
    mean_z = (p * z).sum(1)
    slopes = mean_z - z.gather(1, y[:, None]).squeeze(1)
    curvature = ((p * z ** 2).sum(1) - mean_z ** 2).mean()
    return (slopes.std() / (len(y) ** 0.5 * curvature) / beta ** 2).item()


def temperature_verdict(T: float, se: float, k: float = 2.0) -> str:
    """Over- or under-confident only when T differs from 1 by more than `k` standard errors."""
    if abs(T - 1) <= k * se:
        return (f"T = {T:.2f} ± {se:.2f} is within {k:g} standard errors of 1: no over- or under-confidence "
                "that this many digits can resolve")
    kind = "over-confident (T > 1 softens it)" if T > 1 else "under-confident (T < 1 sharpens it)"
    return f"T = {T:.2f} ± {se:.2f} differs from 1 by {abs(T - 1) / se:.1f} standard errors: {kind}"


def ece_change_verdict(before: float, after: float, se: float, k: float = 2.0) -> str:
    """Temperature scaling 'lowered' or 'raised' the ECE only when the change exceeds `k` paired standard errors."""
    change = after - before
    moved = abs(change) > k * se
    what = ("lowered" if change < 0 else "raised") if moved else "did not change, beyond its uncertainty,"
    return (f"temperature scaling {what} the ECE ({100 * before:.2f} % → {100 * after:.2f} %, a change of "
            f"{100 * change:+.2f} ± {100 * se:.2f} points, paired bootstrap)")


def plot_reliability(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 10, ax: Axes | None = None,
                     label: str = "") -> Axes:
    """Reliability diagram: accuracy against mean confidence per bin, the diagonal being perfect calibration."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.2), layout="constrained")
    bins = reliability_bins(probs, y, n_bins)
    filled = bins.count > 0
    left, accuracy, confidence = (v[filled].numpy() for v in (bins.edges[:-1], bins.accuracy, bins.confidence))
    ax.bar(left, accuracy, width=1 / n_bins, align="edge", alpha=0.6,
           edgecolor="black", label=f"{label} ECE {100 * expected_calibration_error(probs, y, n_bins):.2f} %".strip())
    ax.plot(confidence, accuracy, "o", color="black", ms=3)
    ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="Reliability diagram")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return ax
