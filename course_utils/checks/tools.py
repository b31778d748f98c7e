"""Comparisons the graders share: each raises `Mistake` with what differed."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from . import Mistake


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """`value` as a float64 tensor, or a Mistake saying it is not array-like."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64)
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise Mistake(f"{what} should be a tensor, got {type(value).__name__}: {value!r:.80}") from None


def expect_shape(value: Any, shape: tuple[int, ...], what: str, hint: str = "") -> torch.Tensor:
    """Return `value` as a tensor if its shape is `shape`; else a Mistake naming both shapes."""
    t = as_tensor(value, what)
    if tuple(t.shape) != tuple(shape):
        raise Mistake(f"{what} has shape {tuple(t.shape)}, expected {tuple(shape)}.", hint)
    return t


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Max relative error, cs231n style: |a - e| / max(1e-8, |a| + |e|)."""
    a, e = actual.double(), expected.double()
    return ((a - e).abs() / (a.abs() + e.abs()).clamp_min(1e-8)).max().item()


def expect_close(value: Any, expected: torch.Tensor, what: str, hint: str = "",
                 atol: float = 1e-5, rtol: float = 1e-4) -> float:
    """Compare `value` with `expected` (shape, then values); return the max absolute error."""
    t = expect_shape(value, tuple(expected.shape), what, hint)
    if not torch.isfinite(t).all():
        raise Mistake(f"{what} contains inf or nan.", hint)
    err = (t - expected.double()).abs().max().item() if t.numel() else 0.0
    if not torch.allclose(t, expected.double(), atol=atol, rtol=rtol):
        raise Mistake(f"{what}: off from the reference by up to {err:.3g}.", hint)
    return err


def source_of(answer: Any) -> str:
    """The source text of a student's function or class (also when the grader passes a stand-in)."""
    recorded = getattr(answer, "__dict__", {}).get("_meta", {}).get("source")
    if isinstance(recorded, str):
        return recorded
    try:
        return inspect.getsource(answer)
    except (OSError, TypeError):
        raise Mistake("the grader cannot read the source of your answer.",
                      "define it with def or class in a code cell of the notebook.") from None
