"""Question of notebook 01 (convolution kernels): recover a conv layer's kernel and bias from its inputs and
outputs by gradient descent, the bridge from hand-made kernels to learned ones."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import Mistake, question
from .tools import case_generator
from .tools import as_tensor

NOTEBOOK = "01_convolution_kernels"
# (kernel side, images, image side): a 1x1 kernel (padding 0), odd sides, non-divisible image sizes
LEARN_CASES = [(3, 8, 10), (1, 6, 7), (5, 8, 11)]
TOLERANCE = 1e-2          # largest weight error allowed, relative to the largest true weight (at least 1)


def _layer(kernel_size: int, g: torch.Generator) -> tuple[torch.Tensor, float]:
    """A random non-symmetric kernel (so that a turned or transposed one differs) and a bias in [-1, 1]."""
    kernel = torch.randn(kernel_size, kernel_size, generator=g)
    kernel[0, -1] += 1.5 if kernel_size > 1 else 0.0
    return kernel, float(torch.rand(1, generator=g).item() * 2 - 1)


def _cases() -> list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(kernel side, images (N, 1, H, W), targets (N, 1, H, W), true kernel, true bias), seeded."""
    g = case_generator(1701)
    cases = []
    for k, n, side in LEARN_CASES:
        kernel, bias = _layer(k, g)
        images = torch.randn(n, 1, side, side, generator=g)
        targets = F.conv2d(images, kernel[None, None], torch.tensor([bias]), padding=k // 2)
        cases.append((k, images, targets, kernel, bias))
    return cases


def _as_kernel(value: Any, k: int) -> torch.Tensor:
    """The returned kernel as a (k, k) float64 tensor; (1, 1, k, k) is accepted too."""
    t = as_tensor(value, "the kernel")
    if t.numel() != k * k:
        raise Mistake(f"at kernel_size={k} the kernel has shape {tuple(t.shape)}: expected ({k}, {k}).",
                      "return the weight of the one filter, weight[0, 0] of a (1, 1, k, k) conv weight.")
    return t.reshape(k, k)


def _learned(learn_kernel: Callable[..., Any], k: int, images: torch.Tensor,
             targets: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Call the answer on one case; an error in it becomes a Mistake that names the case."""
    try:
        result = learn_kernel(images.clone(), targets.clone(), k)
    except (Mistake, NotImplementedError):          # a stub is 'not attempted', not a crash
        raise
    except Exception as err:
        raise Mistake(f"learn_kernel(images of shape {tuple(images.shape)}, targets of shape "
                      f"{tuple(targets.shape)}, kernel_size={k}) raised {type(err).__name__}: {err}",
                      "the targets keep the image size, so the layer pads k // 2 pixels on each side "
                      "(0 for a 1x1 kernel).") from None
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Mistake(f"learn_kernel returned {type(result).__name__}: return the pair (kernel, bias).")
    kernel, bias = _as_kernel(result[0], k), as_tensor(result[1], "the bias")
    if bias.numel() != 1:
        raise Mistake(f"the bias has {bias.numel()} numbers: the layer has one output channel, so one bias.")
    if not (torch.isfinite(kernel).all() and torch.isfinite(bias).all()):
        raise Mistake(f"at kernel_size={k} the kernel or the bias holds inf or nan: gradient descent diverged.",
                      "the rate is too large: each step overshoots further; try a rate ten times smaller.")
    return kernel, bias.item()


def _diagnose(k: int, got: torch.Tensor, bias: float, want: torch.Tensor, want_bias: float,
              images: torch.Tensor, targets: torch.Tensor) -> Mistake:
    """What differs between the learned layer and the one that made the targets."""
    scale, case = max(1.0, want.abs().max().item()), f"at kernel_size={k}"

    def near(kernel: torch.Tensor) -> bool:
        return (kernel - want).abs().max().item() <= TOLERANCE * scale

    if k > 1 and near(got.flip(0, 1)):
        return Mistake(f"{case} the kernel is the true one turned by 180°: your forward pass flips it (a true "
                       "convolution), while the layer is a cross-correlation.", "use F.conv2d as it is.")
    if k > 1 and near(got.T):
        return Mistake(f"{case} the kernel is the true one transposed: rows and columns are swapped.")
    if near(got):
        return Mistake(f"{case} the kernel is right but the bias is {bias:.3g}, not {want_bias:.3g}.",
                       "learn the bias as a parameter too, with the kernel.", earned=1,
                       credit="the kernel is right")
    pred = F.conv2d(images.double(), got[None, None], torch.tensor([bias], dtype=torch.float64), padding=k // 2)
    loss, start = F.mse_loss(pred, targets.double()).item(), targets.double().pow(2).mean().item()
    return Mistake(f"{case} the kernel is off by up to {(got - want).abs().max().item():.3g}; the loss of what you "
                   f"returned is {loss:.3g}, against {start:.3g} for an all-zero layer: not converged.",
                   "if the loss grows, the rate is too large or the gradient piles up (zero it every step); "
                   "if it falls slowly, take more steps.")


@question("learn_kernel", NOTEBOOK, points=2, hints=(
    "Section 11 of the lecture learns Sobel x from digits; here the layer also has a bias and keeps the image "
    "size. What padding keeps an n-pixel side at n for a k x k kernel?",
    "Make the weight and the bias tensors that require gradients, start them at zero, and repeat: the "
    "layer's output with F.conv2d, the mean squared error against the targets, zero the gradients, backward, "
    "step. Print the loss now and then: it should fall steadily."),
    reveal="weight = torch.zeros(1, 1, k, k, requires_grad=True) and bias = torch.zeros(1, requires_grad=True); "
    "each step: loss = F.mse_loss(F.conv2d(images, weight, bias, padding=k // 2), targets), clear the "
    ".grad of both, loss.backward(), then under torch.no_grad() weight -= lr * weight.grad and bias -= lr"
    " * bias.grad (or torch.optim.SGD([weight, bias], lr)); return the weight's k x k and the bias.")
def check_learn_kernel(learn_kernel: Callable[..., Any]) -> str:
    if not callable(learn_kernel):
        raise Mistake(f"learn_kernel should be a function, got {type(learn_kernel).__name__}.")
    worst = 0.0
    for k, images, targets, want, want_bias in _cases():
        got, bias = _learned(learn_kernel, k, images, targets)
        scale = max(1.0, want.abs().max().item())
        error = max((got - want.double()).abs().max().item(), abs(bias - want_bias)) / scale
        if error > TOLERANCE:
            raise _diagnose(k, got, bias, want.double(), want_bias, images, targets)
        worst = max(worst, error)
    sizes = ", ".join(str(k) for k, _, _ in LEARN_CASES)
    return (f"recovered the kernel and the bias of layers with kernel sizes {sizes} from their inputs and "
            f"outputs, within {worst:.1e} of the layer's largest weight.")
