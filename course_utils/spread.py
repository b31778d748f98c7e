"""One run is one draw: the spread of a recipe over seeds, and the binomial error of a test accuracy."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import Iterable

import torch

from .data import MNISTData
from .model_cache import TrainConfig, train_or_load


@dataclass(frozen=True)
class Spread:
    """Per-seed values of one metric and their summary (sample standard deviation, n - 1)."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean over seeds."""
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def low(self) -> float:
        """Smallest value over seeds."""
        return min(self.values)

    @property
    def high(self) -> float:
        """Largest value over seeds."""
        return max(self.values)

    def inside(self, value: float, k: float = 2.0) -> bool:
        """True when `value` lies within mean ± k·sd of the seeds (k = 2: about 95 % of draws)."""
        return abs(value - self.mean) <= k * self.sd

    def describe(self, scale: float = 1.0, unit: str = "", digits: int = 2) -> str:
        """'mean ± sd (range low–high, n seeds)', values multiplied by `scale`."""
        f = lambda v: f"{scale * v:.{digits}f}{unit}"
        return (f"{f(self.mean)} ± {scale * self.sd:.{digits}f}{unit} "
                f"(range {f(self.low)} – {f(self.high)}, {len(self.values)} seeds)")


@dataclass(frozen=True)
class SeedSpread:
    """Final test accuracy and loss of one recipe trained with several seeds."""

    config: TrainConfig
    test_acc: Spread
    test_loss: Spread


def seed_spread(config: TrainConfig, data: MNISTData, seeds: Iterable[int] = range(1, 6),
                device: torch.device | None = None, progress: bool = True) -> SeedSpread:
    """Train (or load from the cache) `config` once per seed; return the spread of the final test metrics."""
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seed_spread needs at least one seed, e.g. seeds=range(1, 6).")
    accs, losses = [], []
    for seed in seeds:
        _, history = train_or_load(replace(config, seed=seed), data, device=device, progress=progress)
        accs.append(history.test_acc[-1])
        losses.append(history.test_loss[-1])
    return SeedSpread(config, Spread(seeds, tuple(accs)), Spread(seeds, tuple(losses)))


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on n independent examples: sqrt(p (1 - p) / n)."""
    if not 0 <= accuracy <= 1 or n <= 0:
        raise ValueError(f"accuracy must lie in [0, 1] and n be positive (got {accuracy}, {n}).")
    return math.sqrt(accuracy * (1 - accuracy) / n)
