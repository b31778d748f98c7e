"""What a model costs: parameters, output shapes and multiply-accumulates, layer by layer."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerCost:
    """One leaf module's output shape (one image), parameters and multiply-accumulates."""

    name: str
    kind: str
    out_shape: tuple[int, ...]
    params: int
    macs: int


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    """MACs per image: conv = outputs x (C_in / groups) x kH x kW, linear = outputs x in_features."""
    per_image = out[0].numel()
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return per_image * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def layer_costs(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> list[LayerCost]:
    """Run one zero batch of `input_shape` through `model` and record every leaf module's cost."""
    rows: list[LayerCost] = []

    def hook(module, inputs, out, name):
        own = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append(LayerCost(name, type(module).__name__, tuple(out.shape[1:]), own, _macs(module, out)))

    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n)) for n, m in leaves]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.inference_mode():
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return rows


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> int:
    """Multiply-accumulates per image of convolutions and linear layers."""
    return sum(row.macs for row in layer_costs(model, input_shape))


def cost_table(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> str:
    """A printable table of `layer_costs` with totals."""
    rows = layer_costs(model, input_shape)
    lines = [f"{'layer':<22}{'kind':<14}{'output (C, H, W)':<20}{'params':>10}{'MACs':>14}"]
    for r in rows:
        lines.append(f"{r.name:<22}{r.kind:<14}{str(r.out_shape):<20}{r.params:>10,}{r.macs:>14,}")
    lines.append(f"{'total':<56}{count_parameters(model):>10,}{sum(r.macs for r in rows):>14,}")
    return "\n".join(lines)
