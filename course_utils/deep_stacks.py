"""Deep stacks of 3x3 convolutions for notebook 06, optional A-E: initialisation, activations, gradients, degradation.

`conv_stack` builds x (N, 1, 28, 28) -> stem conv 1->C, stride 2, and max-pool 2 (N, C, 7, 7) -> `depth`
layers of (C, 7, 7) -> flatten (N, 49 C) -> fc logits (N, 10). The flatten head lets a shallow stack classify as
well as a deep one can, so depth is not confounded with the receptive field. A layer is conv-[BN]-act (plain),
act(x + [BN](conv(x))) (residual "post": the ReLU after the addition, as in the original ResNet) or
x + conv(act([BN](x))) (residual "pre": pre-activation, the identity path left untouched).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .compare import Arm
from .device import seed_everything
from .training import evaluate, train_epoch

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid}
INITS = ("default", "xavier", "he")
RESIDUALS = (None, "post", "pre")


def initialise(model: nn.Module, scheme: str) -> nn.Module:
    """Re-draw every conv and linear weight and zero every bias, so that schemes differ only in Var W:
    'default' PyTorch's own draw (uniform, Var W = 1 / (3 fan_in)); 'xavier' N(0, 2 / (fan_in + fan_out))
    (Glorot, for tanh and sigmoid); 'he' N(0, 2 / fan_in) (for ReLU). Returns the model."""
    if scheme not in INITS:
        raise ValueError(f"init must be one of {INITS}, not {scheme!r}.")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "default":
                m.reset_parameters()
            elif scheme == "xavier":
                nn.init.xavier_normal_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


class StackLayer(nn.Module):
    """One (C, H, W) -> (C, H, W) layer of `conv_stack`: plain, residual 'post' or residual 'pre'."""

    def __init__(self, channels: int, activation: str, batchnorm: bool, residual: str | None):
        super().__init__()
        self.residual = residual
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels) if batchnorm else nn.Identity()
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.residual == "pre":
            return x + self.conv(self.act(self.bn(x)))      # identity path untouched
        out = self.bn(self.conv(x))
        return self.act(x + out) if self.residual == "post" else self.act(out)


def conv_stack(depth: int, residual: str | None = None, batchnorm: bool = False, activation: str = "relu",
               init: str = "default", channels: int = 16) -> nn.Sequential:
    """The stack of the module docstring with `depth` layers after the stem (see `StackLayer`)."""
    if residual not in RESIDUALS or activation not in ACTIVATIONS:
        raise ValueError(f"residual must be one of {RESIDUALS} and activation one of {tuple(ACTIVATIONS)}.")
    stem = [nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.MaxPool2d(2)]
    stem += [nn.BatchNorm2d(channels)] if batchnorm else []
    layers = [StackLayer(channels, activation, batchnorm, residual) for _ in range(depth)]
    head = ([nn.BatchNorm2d(channels)] if batchnorm else []) + [nn.Flatten(), nn.Linear(channels * 7 * 7, 10)]
    model = nn.Sequential(*stem, ACTIVATIONS[activation](), *layers, *head)
    return initialise(model, init).to(memory_format=torch.channels_last)   # faster convolutions on CPUs


def first_layer_grad_norm(model: nn.Sequential, X: torch.Tensor, y: torch.Tensor) -> float:
    """Norm of the cross-entropy gradient with respect to the first layer's weight, on one batch (X, y)."""
    model.train()
    model.zero_grad()
    F.cross_entropy(model(X), y).backward()
    return model[0].weight.grad.norm().item()


def layer_statistics(model: nn.Sequential, X: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """Per layer of a `conv_stack` (the stem's activation, then each `StackLayer`), on one batch (X, y):
    'std' and 'mean_square' of its output, and 'grad_norm', the norm of the cross-entropy gradient with
    respect to its convolution's weight (the stem's conv for the first entry)."""
    outputs, convs = [], [model[0]] + [m.conv for m in model if isinstance(m, StackLayer)]
    stem_act = next(i for i, m in enumerate(model) if isinstance(m, tuple(ACTIVATIONS.values())))
    watched = [model[stem_act]] + [m for m in model if isinstance(m, StackLayer)]
    handles = [m.register_forward_hook(lambda module, inputs, out: outputs.append(out.detach())) for m in watched]
    try:
        model.train()
        model.zero_grad()
        F.cross_entropy(model(X.contiguous(memory_format=torch.channels_last)), y).backward()
    finally:
        for h in handles:
            h.remove()
    return {"std": [o.std().item() for o in outputs], "mean_square": [o.pow(2).mean().item() for o in outputs],
            "grad_norm": [c.weight.grad.norm().item() for c in convs]}


def layer_factor(mean_squares: list[float]) -> float:
    """Geometric mean over layers of ms_l / ms_(l-1): the factor by which one layer multiplies E[x²]."""
    ratios = [b / a for a, b in zip(mean_squares, mean_squares[1:])]
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios))


def train_steps(model: nn.Module, X: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int = 64,
                lr: float = 0.05, seed: int = 1) -> list[float]:
    """Train `steps` SGD steps (momentum 0.9) on batches of (X, y), reshuffled (by `seed`) on every pass
    through the data, with the course's `train_epoch`; return the per-step training losses."""
    if steps < 1 or len(X) == 0:
        raise ValueError(f"train_steps needs steps >= 1 and some images, got steps={steps} and {len(X)} images.")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    n = steps * batch_size
    order = torch.cat([torch.randperm(len(X), generator=generator) for _ in range(-(-n // len(X)))])[:n]
    losses, _ = train_epoch(model, X[order].contiguous(memory_format=torch.channels_last), y[order],
                            optimizer, batch_size)
    return losses


def train_at_best_rate(make_stack, X: torch.Tensor, y: torch.Tensor, steps: int, rates: tuple[float, ...],
                       seed: int = 1) -> tuple[float, list[float], nn.Module]:
    """Train a fresh `make_stack()` (built after seeding with `seed`) for `steps` SGD steps at each rate and
    keep the one with the lowest final training loss (`final_loss`): return (rate, its losses, its model)."""
    runs = []
    for lr in rates:
        seed_everything(seed)
        model = make_stack()
        runs.append((lr, train_steps(model, X, y, steps, lr=lr, seed=seed), model))
    finite = lambda v: v if math.isfinite(v) else math.inf                # a diverged run (nan) is never kept
    return min(runs, key=lambda run: finite(final_loss(run[1])))


def train_seeds(name: str, make_stack, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor, y_val: torch.Tensor,
                steps: int, lr: float, seeds: tuple[int, ...]) -> tuple[list[list[float]], Arm]:
    """Train a fresh `make_stack()` per seed (built and shuffled with that seed) for `steps` SGD steps at `lr`;
    return the per-step loss curves and an `Arm` (accuracy on (X_val, y_val), `final_loss`) for `verdict`."""
    curves, accs = [], []
    for seed in seeds:
        seed_everything(seed)
        model = make_stack()
        curves.append(train_steps(model, X, y, steps, lr=lr, seed=seed))
        accs.append(evaluate(model, X_val.contiguous(memory_format=torch.channels_last), y_val)[1])
    return curves, Arm(name, tuple(accs), tuple(final_loss(c) for c in curves))


def final_loss(losses: list[float]) -> float:
    """Mean training loss over the last fifth of the steps."""
    tail = losses[-max(1, len(losses) // 5):]
    return sum(tail) / len(tail)


def dead_fraction(model: nn.Sequential, X: torch.Tensor) -> float:
    """Fraction of the ReLU channels in `model` that output 0 for every image and pixel of X."""
    dead, total = [], []

    def hook(module, inputs, out):
        dead.append((out.amax(dim=(0, 2, 3)) <= 0).sum().item())
        total.append(out.shape[1])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        model.eval()
        with torch.inference_mode():
            model(X)
    finally:
        for h in handles:
            h.remove()
    return sum(dead) / max(1, sum(total))
