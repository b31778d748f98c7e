"""Residual networks for MNIST: the building blocks, the report's ResNet and a faster upgrade.

A residual block computes y = relu(F(x) + s(x)), where F is conv-BN-ReLU-conv-BN and the
shortcut s is the identity when shapes agree, else a 1x1 convolution W_s that matches channels
and stride. The report's block (`ReportBlock`, its Appendix C) gives every convolution a bias and
uses a plain 1x1 convolution as W_s; the upgrade's block (`ResidualBlock`) drops the biases (a
BatchNorm follows each convolution) and puts a BatchNorm after W_s. Squeeze-and-excitation (SE)
rescales the channels of F(x) by gates in (0, 1) computed from their global averages.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import MEAN, STD, MNISTData
from .device import get_device, seed_everything
from .model_cache import TrainConfig, _load, cache_path, make_optimizer, save_to_cache
from .training import History, fit, train_epoch


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: x (N, C, H, W) -> x * g, with gates g (N, C, 1, 1) in (0, 1).

    squeeze z = mean over H, W of x (N, C); excite g = sigmoid(W2 relu(W1 z + b1) + b2),
    W1 (C/r, C), W2 (C, C/r): a bottleneck with reduction ratio r.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        if channels % reduction:
            raise ValueError(f"channels ({channels}) must be divisible by the reduction ratio ({reduction}).")
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=(2, 3))                                  # (N, C) squeeze
        g = torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))    # (N, C) excite
        return x * g[:, :, None, None]


class ResidualBlock(nn.Module):
    """x (N, C_in, H, W) -> relu(F(x) + s(x)) (N, C_out, H/stride, W/stride).

    F = conv3x3(stride) - BN - ReLU - conv3x3 - BN [- SE]; s = identity when C_in == C_out and
    stride == 1, else the projection W_s: conv1x1(stride) - BN.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, se_reduction: int | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        self.se = SEBlock(out_channels, se_reduction) if se_reduction else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return torch.relu(out + self.shortcut(x))


class ReportBlock(nn.Module):
    """The report's residual block (Appendix C): x (N, C_in, H, W) -> (N, C_out, H/stride, W/stride).

    y = relu(bn2(conv2(relu(bn1(conv1(x))))) + s(x)): conv1 3x3 (stride), conv2 3x3, both with padding 1
    and a bias (nn.Conv2d's default); s = conv3, a plain 1x1 convolution (stride, bias, no BatchNorm),
    when `use_1x1conv`, else the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, use_1x1conv: bool = False, stride: int = 1):
        super().__init__()
        if not use_1x1conv and (in_channels != out_channels or stride != 1):
            raise ValueError(f"an identity shortcut cannot map ({in_channels} channels, stride {stride}) to "
                             f"{out_channels} channels: pass use_1x1conv=True.")
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv3 = nn.Conv2d(in_channels, out_channels, 1, stride=stride) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.conv3 is None else self.conv3(x)))


class ReportResNet(nn.Module):
    """The reference report's modified ResNet18 (Appendix C), 745,626 parameters; every block at 13x13.

    x (N, 1, 28, 28) -> conv 3x3 1->8 (no padding, bias) - BN - ReLU (N, 8, 26, 26) -> max-pool 2, stride 2
    (N, 8, 13, 13) -> 8 `ReportBlock`s 8->16->16->32->32->64->64->128->128, a 1x1 conv3 where the channels
    change (N, 128, 13, 13) -> avg-pool 2 (N, 128, 6, 6) -> flatten (N, 4608) -> fc logits (N, 10).
    `downsample=True` is a variant for the comparison, not the report's network: the blocks 16->32, 32->64
    and 64->128 take stride 2 (13 -> 7 -> 4 -> 2), so the avg-pool leaves (N, 128, 1, 1) and fc is 128->10.
    """

    CHANNELS = (8, 16, 16, 32, 32, 64, 64, 128, 128)

    def __init__(self, num_classes: int = 10, downsample: bool = False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        blocks = []
        for c_in, c_out in zip(self.CHANNELS, self.CHANNELS[1:]):
            stride = 2 if downsample and c_in != c_out and c_in >= 16 else 1
            blocks.append(ReportBlock(c_in, c_out, use_1x1conv=c_in != c_out, stride=stride))
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear((1 if downsample else 36) * 128, num_classes)
        self.to(memory_format=torch.channels_last)   # channels-last layout: faster convolutions on CPUs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)    # (N, C, H, W) stored as (N, H, W, C)
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


class FastResNet(nn.Module):
    """The upgrade: a ResNet whose stages halve the resolution, so most blocks run on small maps.

    x (N, 1, 28, 28) -> conv 3x3 1->w0 - BN - ReLU (N, w0, 28, 28) -> for each further width w_i a
    stage of `depth` residual blocks, the first with stride 2: (N, w1, 14, 14) -> (N, w2, 7, 7)
    -> (N, w3, 4, 4) -> (N, w4, 2, 2) -> global average pool (N, w_last) -> fc logits (N, 10).
    `se_reduction` adds squeeze-and-excitation with that reduction ratio to every block.
    """

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64, 128), depth: int = 1,
                 se_reduction: int | None = None, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(1, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks = []
        for c_in, c_out in zip(widths, widths[1:]):
            blocks.append(ResidualBlock(c_in, c_out, stride=2, se_reduction=se_reduction))
            blocks += [ResidualBlock(c_out, c_out, se_reduction=se_reduction) for _ in range(depth - 1)]
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(widths[-1], num_classes)
        self.to(memory_format=torch.channels_last)   # channels-last layout: faster convolutions on CPUs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)    # (N, C, H, W) stored as (N, H, W, C)
        return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def random_affine(X: torch.Tensor, max_degrees: float = 10.0, max_shift: float = 0.1,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each image of X (N, 1, H, W) by its own angle in [-max_degrees, max_degrees] and
    shift it by up to `max_shift` of its size; uncovered pixels get the (normalised) background.

    torchvision's RandomAffine draws one transform per call, shared by the whole batch; here every
    image gets its own, as a batch of 2x3 matrices for `F.affine_grid` and one `F.grid_sample`.
    """
    if X.dim() != 4:
        raise ValueError(f"random_affine expects a batch (N, C, H, W), got shape {tuple(X.shape)}; "
                         "add a batch dimension with X[None].")
    n = len(X)
    u = torch.rand(n, 3, generator=generator).to(X.device) * 2 - 1              # (N, 3) in [-1, 1]
    angle = u[:, 0] * math.radians(max_degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, 2 * max_shift * u[:, 1]], 1),
                         torch.stack([sin, cos, 2 * max_shift * u[:, 2]], 1)], 1)   # (N, 2, 3)
    grid = F.affine_grid(theta.to(X.dtype), list(X.shape), align_corners=False)
    background = -MEAN / STD
    return F.grid_sample(X - background, grid, align_corners=False) + background


class Augment(nn.Module):
    """`random_affine` in training mode, the identity in eval mode: put it in front of a model."""

    def __init__(self, max_degrees: float = 10.0, max_shift: float = 0.1):
        super().__init__()
        self.max_degrees, self.max_shift = max_degrees, max_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return random_affine(x, self.max_degrees, self.max_shift) if self.training else x


def sgd_cosine(model: nn.Module, epochs: int, lr: float = 0.1, weight_decay: float = 5e-4
               ) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with Nesterov momentum 0.9 and a per-epoch cosine decay: epoch e (0-based) trains at
    lr * (1 + cos(pi * (e + 1/2) / epochs)) / 2, the cosine at the middle of the epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: (1 + math.cos(math.pi * (e + 0.5) / epochs)) / 2)
    return optimizer, scheduler


def estimate_epoch_seconds(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int,
                           steps: int = 4, device: torch.device | None = None, epoch_images: int = 60_000) -> float:
    """Seconds for one training epoch over `epoch_images` images, extrapolated from `steps` timed SGD steps
    (after one untimed warm-up step) on the first images of (X, y). The model's weights change."""
    device = device or get_device()
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    X, y = X[:(steps + 1) * batch_size].to(device), y[:(steps + 1) * batch_size].to(device)
    train_epoch(model, X[:batch_size], y[:batch_size], optimizer, batch_size)   # returns after syncing
    start = time.perf_counter()
    train_epoch(model, X[batch_size:], y[batch_size:], optimizer, batch_size)
    return (time.perf_counter() - start) / (len(X) - batch_size) * epoch_images


def train_or_load_resnet(config: TrainConfig, make_model: Callable[[], nn.Module], data: MNISTData,
                         device: torch.device | None = None) -> tuple[nn.Module, History, bool]:
    """`model_cache.train_or_load` for a network built by `make_model` (after seeding with `config.seed`) rather
    than by name: `config.model` names it in the cache key and file. Trained quietly with `fit` and the optimizer
    and StepLR `config` names; returns (model in eval mode on `device`, History, whether it came from the cache)."""
    device = device or get_device()
    seed_everything(config.seed)
    model = make_model()
    path = cache_path(config, data)
    history = _load(path, model)
    loaded = history is not None
    if not loaded:
        optimizer, scheduler = make_optimizer(config, model)
        history = fit(model, data, optimizer, config.epochs, config.batch_size, scheduler, seed=config.seed,
                      device=device, progress=False)
        save_to_cache(config, data, model, history)
    return model.to(device).eval(), history, loaded
