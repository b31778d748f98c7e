"""Question of notebook 04 (filters): the backward pass of a whole conv layer, batch and channels included:
gradients of the input, the weight (C_out, C_in, k, k) and the bias."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import Mistake, question
from .conv_backward import BACKWARD_BUILTINS, CONV_BUILTINS
from .tools import case_generator, case_random
from .tools import Watch, as_tensor, forbid, rel_error

NOTEBOOK = "04_filter_visualization"
LAYER_FORBIDDEN = {k: v for k, v in BACKWARD_BUILTINS.items() if v not in CONV_BUILTINS.values()
                   or "transpose" in v}
# (N, C_in, C_out, H, W, k): channels that differ (so a swapped axis shows), one channel and a 1x1 kernel,
# an even kernel, one example
LAYER_CASES = [(2, 3, 4, 6, 7, 3), (1, 1, 1, 5, 5, 1), (3, 2, 5, 8, 6, 2), (1, 4, 2, 4, 9, 4)]
THRESHOLD = 1e-7


def _case(n: int, c_in: int, c_out: int, h: int, w: int, k: int, g: torch.Generator) -> dict:
    """Inputs and autograd's float64 gradients for one layer."""
    x, weight = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64), torch.randn(
        c_out, c_in, k, k, generator=g, dtype=torch.float64)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
    out = F.conv2d(*leaves)
    grad_out = torch.randn(out.shape, generator=g, dtype=torch.float64)
    return {"inputs": (x, weight, grad_out), "want": torch.autograd.grad(out, leaves, grad_out),
            "per example": torch.stack([torch.autograd.grad(F.conv2d(leaves[0][i:i + 1], leaves[1]), leaves[1],
                                                            grad_out[i:i + 1])[0] for i in range(n)])}


def _gradient_slip(name: str, got: torch.Tensor, want: torch.Tensor, case: dict) -> str:
    """What is wrong with one returned gradient, or '' if it is right."""
    if tuple(got.shape) != tuple(want.shape):
        if name == "grad_weight" and tuple(got.shape) == tuple(case["per example"].shape):
            return "grad_weight keeps one gradient per example: the weight is shared by the batch, so sum over it."
        if name == "grad_weight" and got.dim() == 4 and tuple(got.shape) == tuple(want.transpose(0, 1).shape):
            return (f"grad_weight has shape {tuple(got.shape)}, the weight's axes swapped: it is "
                    f"(C_out, C_in, k, k) = {tuple(want.shape)}.")
        if name == "grad_bias":
            return (f"grad_bias has shape {tuple(got.shape)}: one bias per output channel, {tuple(want.shape)}, "
                    "each summed over the batch and every position.")
        return f"{name} has shape {tuple(got.shape)}, not {tuple(want.shape)}."
    if name == "grad_x" and got.shape[-1] > 1 and rel_error(got, -want) < THRESHOLD:
        return "grad_x has the wrong sign."
    if rel_error(got, want) < THRESHOLD:
        return ""
    x, weight, grad_out = case["inputs"]
    k = weight.shape[-1]
    unflipped = F.conv2d(F.pad(grad_out, (k - 1,) * 4), weight.transpose(0, 1))
    if name == "grad_x" and k > 1 and rel_error(got, unflipped) < THRESHOLD:
        return "grad_x uses the kernel as it is: the input's gradient needs it turned by 180°."
    if name == "grad_weight" and rel_error(got, case["per example"][0]) < THRESHOLD and len(x) > 1:
        return "grad_weight holds the first example's gradient only: add up every example's."
    return f"{name}: relative error {rel_error(got, want):.2e} against autograd in float64 (it should be below 1e-7)."


@question("conv_layer_backward", NOTEBOOK, points=2, kind="backward", hints=(
    "Start from one output pixel out[n, o, i, j] = b[o] + sum over c, u, v of x[n, c, i+u, j+v] w[o, c, u, v]. "
    "Which numbers does one weight w[o, c, u, v] multiply, across the batch and every position?",
    "Each gradient is itself a cross-correlation, so F.conv2d may compute it with the right axes in the "
    "batch and channel places: for the weight, the examples play the role of channels; for the input, grad_out "
    "is padded by k - 1 and the kernel turned by 180°, with input and output channels exchanged. Check the "
    "shapes first: each gradient has the shape of what it is the gradient of."),
    reveal="grad_bias = grad_out.sum((0, 2, 3)); grad_weight = F.conv2d(x.transpose(0, 1), grad_out.transpose(0,"
    " 1)).transpose(0, 1); grad_x = F.conv2d(F.pad(grad_out, (k - 1,) * 4), weight.flip(2, "
    "3).transpose(0, 1)).")
def check_conv_layer_backward(conv_layer_backward: Callable[..., Any]) -> str:
    g = case_generator(44)
    r = case_random(45)
    k = r.randrange(1, 5)
    specs = LAYER_CASES + [(r.randrange(1, 4), r.randrange(1, 5), r.randrange(1, 5), k + r.randrange(0, 6),
                            k + r.randrange(0, 6), k)]     # a layer of sizes drawn for the student
    cases = [_case(*spec, g) for spec in specs]
    for spec, case in zip(specs, cases):
        x, weight, grad_out = case["inputs"]
        call = (f"conv_layer_backward(x {tuple(x.shape)}, weight {tuple(weight.shape)}, "
                f"grad_out {tuple(grad_out.shape)})")
        with Watch(LAYER_FORBIDDEN) as watch:
            result = conv_layer_backward(x.clone(), weight.clone(), grad_out.clone())
        forbid(watch.used, "conv_layer_backward", "F.conv2d (forward) is allowed; write the gradients with it.")
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise Mistake(f"{call} returned {type(result).__name__}: return (grad_x, grad_weight, grad_bias).")
        for name, got, want in zip(("grad_x", "grad_weight", "grad_bias"), result, case["want"]):
            if str(getattr(got, "dtype", "")) in ("torch.float32", "torch.float16", "torch.bfloat16"):
                raise Mistake(f"{call}: {name} is {got.dtype} for float64 inputs; keep the inputs' dtype.")
            slip = _gradient_slip(name, as_tensor(got, name), want, case)
            if slip:
                raise Mistake(f"{call}: {slip}", "run hint('conv_layer_backward').")
    return (f"grad_x, grad_weight and grad_bias match autograd in float64 on {len(cases)} layers (channels "
            "that differ, a 1x1 kernel, an even kernel, batches of 1 to 3).")
