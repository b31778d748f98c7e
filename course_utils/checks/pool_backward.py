"""Question of notebook 01 (convolution kernels): the backward pass of 2x2 max-pooling, with ties, odd sizes
and windows of one output pixel."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import Mistake, question
from .tools import case_generator
from .tools import Watch, as_tensor, forbid

NOTEBOOK = "01_convolution_kernels"
POOL_BUILTINS = {F.max_pool2d: "F.max_pool2d", torch.max_pool2d: "torch.max_pool2d",
                 F.max_pool2d_with_indices: "F.max_pool2d_with_indices", F.max_unpool2d: "F.max_unpool2d",
                 torch.ops.aten.max_pool2d_with_indices_backward.default: "max-pool's own backward",
                 torch.Tensor.backward: "Tensor.backward (autograd)", torch.autograd.backward: "torch.autograd.backward",
                 torch.autograd.grad: "torch.autograd.grad"}
# (N, C, H, W, values): odd sides (a last row or column in no window), one-pixel outputs, and integer
# values so that windows hold ties
POOL_CASES = [(2, 3, 6, 8, "random"), (1, 2, 7, 9, "random"), (2, 2, 6, 6, "ties"), (1, 1, 3, 2, "random")]


def _case(n: int, c: int, h: int, w: int, values: str, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """An input and an upstream gradient (no zeros, so a gradient sent nowhere shows)."""
    x = (torch.randint(0, 3, (n, c, h, w), generator=g).double() if values == "ties"
         else torch.randn(n, c, h, w, generator=g, dtype=torch.float64))
    grad_out = torch.rand(n, c, h // 2, w // 2, generator=g, dtype=torch.float64) + 0.5
    return x, grad_out


def _windows(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The 2x2 windows of the pooled region of t, (N, C, h, w, 4)."""
    n, c = t.shape[:2]
    return t[..., :2 * h, :2 * w].reshape(n, c, h, 2, w, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w, 4)


def _mistake(got: torch.Tensor, x: torch.Tensor, grad_out: torch.Tensor, case: str) -> str:
    """Why `got` is not a gradient of 2x2 max-pooling at x, or '' if it is one.

    Any rule that sends each window's gradient to one of its maxima is right (PyTorch picks the first).
    """
    h, w = grad_out.shape[-2:]
    if got.shape != x.shape:
        odd = " A last row or column of an odd side is in no window: its gradient is 0." if x.shape[-1] % 2 else ""
        return f"{case}: grad_x has shape {tuple(got.shape)}, not the input's {tuple(x.shape)}.{odd}"
    outside = got.clone()
    outside[..., :2 * h, :2 * w] = 0
    if outside.abs().max() > 0:
        return f"{case}: the last row or column, in no window, received a gradient; it should get 0."
    g, xs, upstream = _windows(got, h, w), _windows(x, h, w), grad_out[..., None]
    is_max = xs == xs.amax(-1, keepdim=True)
    if torch.allclose(g, upstream.expand_as(g) / 4):
        return f"{case}: each pixel got a quarter of its window's gradient: that is average pooling's backward."
    if torch.allclose(g, upstream.expand_as(g)):
        return f"{case}: every pixel of a window got the window's whole gradient; only its maximum reached the output."
    if torch.allclose(g, is_max * upstream) and (is_max.sum(-1) > 1).any():
        return (f"{case}: in windows with a tie, every maximum got the window's whole gradient, so the window "
                "passes back more than it received; send it to one maximum only.")
    one_max = ((g != 0) <= is_max).all() and ((g != 0).sum(-1) <= 1).all()
    if not (one_max and torch.allclose(g.sum(-1), grad_out)):
        return f"{case}: grad_x differs; a window's gradient should go, whole, to the position of its maximum."
    return ""


@question("maxpool_backward", NOTEBOOK, points=2, kind="backward", hints=(
    "Only one value of each 2x2 window reaches the output. Which input pixels can change the loss, and by how "
    "much? What happens to a pixel in no window (the last row of a 7-pixel side)?",
    "Reshape the pooled region into its windows, find where each window's maximum sits, and put the window's "
    "gradient there and 0 elsewhere. Try a window whose four values are equal: how many pixels got a gradient?"),
    reveal="Crop x to the windows, reshape it to (N, C, H // 2, 2, W // 2, 2) and move each window's 4 values to"
    " one axis; take argmax over it (one position per tie), put grad_out there with a one-hot mask "
    "(F.one_hot(idx, 4) * grad_out[..., None]), reshape back, and pad the cropped rows and columns with "
    "zeros.")
def check_maxpool_backward(maxpool_backward: Callable[..., Any]) -> str:
    g = case_generator(27)
    cases = [_case(*spec, g) for spec in POOL_CASES]
    with Watch(POOL_BUILTINS) as watch:
        answers = [maxpool_backward(x.clone(), grad_out.clone()) for x, grad_out in cases]
    forbid(watch.used, "maxpool_backward", "find each window's maximum yourself (reshape or F.unfold, then argmax).")
    for (n, c, h, w, values), (x, grad_out), answer in zip(POOL_CASES, cases, answers):
        case = f"maxpool_backward(x of shape {(n, c, h, w)}{', with ties' if values == 'ties' else ''})"
        why = _mistake(as_tensor(answer, "grad_x"), x, grad_out, case)
        if why:
            raise Mistake(why, "run hint('maxpool_backward').")
    return (f"sends each window's gradient to its maximum, one maximum per tie, 0 to pixels in no window, on "
            f"{len(cases)} inputs (odd sides, ties, a one-pixel output).")
