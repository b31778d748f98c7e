"""Smoothing a noisy per-step loss curve: a bias-corrected EMA, and the Kalman filter it comes from."""
from __future__ import annotations

import math
from typing import Sequence

import torch


def ema(values: Sequence[float] | torch.Tensor, beta: float = 0.9) -> torch.Tensor:
    """Bias-corrected EMA of a 1-D sequence x (T,) -> s (T,) float64.

    m_0 = 0, m_t = beta * m_{t-1} + (1 - beta) * x_t, s_t = m_t / (1 - beta^t) for t = 1..T,
    so s_1 = x_1 and s_t averages roughly the last 1 / (1 - beta) values.
    """
    x = torch.as_tensor(values, dtype=torch.float64)
    if x.dim() != 1:
        raise ValueError(f"ema expects a 1-D sequence of losses, got shape {tuple(x.shape)}; "
                         "pass history.step_loss or flatten it first.")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}; 0.9 averages about the last 10 steps.")
    smoothed, m = torch.empty_like(x), 0.0
    for t, value in enumerate(x.tolist(), start=1):
        m = beta * m + (1.0 - beta) * value
        smoothed[t - 1] = m / (1.0 - beta ** t)
    return smoothed


def beta_for_images(batch_size: int, images: int) -> float:
    """The EMA factor that averages over about `images` images: b / (1 - beta) = images."""
    if not 0 < batch_size < images:
        raise ValueError(f"images={images} must exceed batch_size={batch_size}: an EMA cannot average "
                         "over less than one step.")
    return 1.0 - batch_size / images


def ema_per_image(values: Sequence[float] | torch.Tensor, batch_size: int, images: int = 5120) -> torch.Tensor:
    """EMA of per-step losses of batches of `batch_size`, averaging over about `images` images (not steps)."""
    return ema(values, beta_for_images(batch_size, images))


def kalman_local_level(values: Sequence[float] | torch.Tensor, q: float, r: float,
                       p0: float = 1e6) -> tuple[torch.Tensor, torch.Tensor]:
    """One-dimensional Kalman filter for the local-level model; return (estimates (T,), gains (T,)).

    Model: level l_t = l_(t-1) + w_t, w ~ N(0, q); observation x_t = l_t + v_t, v ~ N(0, r).
    Step: P⁻ = P + q, k = P⁻ / (P⁻ + r), s = s + k (x_t - s), P = (1 - k) P⁻; start s = 0, P = p0.
    """
    if q <= 0 or r <= 0:
        raise ValueError(f"q={q} and r={r} must both be positive variances.")
    x = torch.as_tensor(values, dtype=torch.float64)
    estimates, gains = torch.empty_like(x), torch.empty_like(x)
    s, p = 0.0, p0
    for t, value in enumerate(x.tolist()):
        p_prior = p + q
        k = p_prior / (p_prior + r)
        s, p = s + k * (value - s), (1.0 - k) * p_prior
        estimates[t], gains[t] = s, k
    return estimates, gains


def steady_state_gain(q: float, r: float) -> float:
    """The gain the local-level Kalman filter converges to: k = (-λ + sqrt(λ² + 4λ)) / 2, λ = q / r."""
    lam = q / r
    return (-lam + math.sqrt(lam * lam + 4.0 * lam)) / 2.0


def noise_ratio_for_beta(beta: float) -> float:
    """The q / r whose steady-state gain is 1 - beta: λ = (1 - beta)² / beta (from k² = λ (1 - k))."""
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1), got {beta}.")
    return (1.0 - beta) ** 2 / beta


def ema_lag(beta: float) -> float:
    """Steps an EMA trails a straight line by, once its start-up has passed: beta / (1 - beta)."""
    return beta / (1.0 - beta)
