"""Smoothing a noisy per-step loss curve with a bias-corrected exponential moving average."""
from __future__ import annotations

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
