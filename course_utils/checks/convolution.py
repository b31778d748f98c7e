"""Questions of notebook 01 (convolution kernels): output size, conv2d by loops and vectorised, an edge kernel."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..kernels import output_size as output_size_reference
from . import Mistake, question
from .tools import as_tensor, expect_shape

NOTEBOOK = "01_convolution_kernels"
# (image height, width, kernel side, stride, padding, dtype): strides that do not divide evenly,
# non-square images, float32 and float64, so that no hard-coded or half-right answer fits them all.
CONV_CASES = [(6, 7, 3, 1, 0, torch.float64), (7, 5, 3, 1, 1, torch.float64), (9, 8, 3, 2, 0, torch.float64),
              (10, 11, 5, 3, 2, torch.float64), (12, 9, 2, 2, 1, torch.float32)]
VECTORISED_CASE = (40, 40, 3, 1, 0)


class _CountTorchCalls(TorchFunctionMode):
    """Count the torch functions and tensor methods called, and remember whether conv2d was one."""

    def __init__(self):
        super().__init__()
        self.calls, self.used_conv2d = 0, False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        self.used_conv2d |= func in (F.conv2d, torch.conv2d)
        return func(*args, **(kwargs or {}))


def _size_mistakes(n: int, k: int, s: int, p: int) -> list[tuple[float, str, str]]:
    """(wrong size, what went wrong, hint) for the common slips, most telling first."""
    formula = "out = (n + 2p - k) // s + 1"
    return [
        ((n + 2 * p - k) / s + 1, "used true division: a window only counts if it fits entirely.",
         f"round down with //: {formula}."),
        ((n + 2 * p - k) // s, "off by one: the count of window positions is one more than the number of steps.",
         f"add 1: {formula}."),
        ((n + 2 * p - k) // s + 2, "off by one: one window too many.", formula),
        (-(-(n + 2 * p - k) // s) + 1, "rounded up: a window that runs past the padded edge does not count.",
         f"round down with //: {formula}."),
        ((n - k) // s + 1, "padding ignored.", f"padding p adds p pixels on each side: {formula}."),
        ((n + p - k) // s + 1, "padding counted on one side only.", f"padding p adds p pixels on each side: {formula}."),
        (n + 2 * p - k + 1, "stride ignored.", f"a stride s moves the window s pixels at a time: {formula}."),
    ]


@question("output_size", NOTEBOOK)
def check_output_size(output_size: Callable[..., int]) -> str:
    cases = [(28, 3, 1, 0), (28, 3, 1, 1), (28, 5, 2, 2), (15, 4, 2, 0), (13, 5, 3, 2), (100, 7, 4, 3),
             (7, 3, 3, 1), (10, 3, 1, 2)]
    answers = [output_size(n, k, stride=s, padding=p) for n, k, s, p in cases]
    wanted = [output_size_reference(*case) for case in cases]
    wrong = [i for i, (got, want) in enumerate(zip(answers, wanted)) if got != want]
    if not wrong:
        return f"output_size is right on {len(cases)} cases, e.g. n=28, k=5, stride 2, padding 2 -> 14."
    slips = [_size_mistakes(*case) for case in cases]          # per case: [(size, what, hint), ...]
    explains = lambda j: all(answers[i] == slips[i][j][0] for i in range(len(cases)))
    what, hint = next(((w, h) for j, (_, w, h) in enumerate(slips[0]) if explains(j)),
                      ("", "trace it by hand: list the positions where the window's left edge can start."))
    (n, k, s, p), i = cases[wrong[0]], wrong[0]
    raise Mistake(f"output_size(n={n}, kernel_size={k}, stride={s}, padding={p}) returned {answers[i]!r}, "
                  f"expected {wanted[i]}. {what}".rstrip(), hint)


def _conv(image: torch.Tensor, kernel: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    return F.conv2d(image[None, None], kernel[None, None], stride=stride, padding=padding)[0, 0]


SLIPS = [  # (what the slip does to (kernel, stride, padding), what went wrong, hint)
    (lambda w, s, p: (w.flip(0, 1), s, p), "you flipped the kernel: that is a true convolution, but PyTorch's "
     "conv2d (and this exercise) computes cross-correlation.", "multiply each patch by kernel[u, v] as it is."),
    (lambda w, s, p: (w, s, 0), "padding ignored.", "zero-pad the image by `padding` pixels on every side first "
     "(F.pad(image, (p, p, p, p)))."),
    (lambda w, s, p: (w, 1, p), "stride ignored.", "output pixel (i, j) starts its patch at row i*stride, "
     "column j*stride."),
    (lambda w, s, p: (w, 1, 0), "padding and stride both ignored.", "pad first, then move by `stride`."),
]


def _matches(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and bool(torch.allclose(got, want, atol=1e-4, rtol=1e-4))


def _check_conv2d(conv2d: Callable[..., Any], name: str) -> str:
    """Compare `conv2d(image, kernel, stride, padding)` with F.conv2d on every CONV_CASES case."""
    g = torch.Generator().manual_seed(1)
    inputs, answers = [], []
    for h, w, k, s, p, dtype in CONV_CASES:
        image = torch.randn(h, w, generator=g, dtype=torch.float64)
        kernel = torch.randn(k, k, generator=g, dtype=torch.float64)
        with _CountTorchCalls() as counter:
            got = conv2d(image.to(dtype, copy=True), kernel.to(dtype, copy=True), stride=s, padding=p)
        if counter.used_conv2d:
            raise Mistake(f"{name} calls F.conv2d: the point is to compute it yourself.",
                          "use loops over output pixels, or F.unfold and one matrix product.")
        inputs.append((image, kernel, s, p))
        answers.append(as_tensor(got, f"{name}'s result"))
    wrong = [i for i, (got, (x, w, s, p)) in enumerate(zip(answers, inputs)) if not _matches(got, _conv(x, w, s, p))]
    if not wrong:
        return f"{name} matches F.conv2d on {len(CONV_CASES)} cases (padding, strides, non-square images, float32/64)"
    h, w, k, s, p, dtype = CONV_CASES[wrong[0]]
    what = f"{name}(image {h}x{w}, kernel {k}x{k}, stride={s}, padding={p}) in {str(dtype)[6:]}"
    for slip, mistake, hint in SLIPS:
        if all(_matches(got, _conv(x, *slip(kern, st, pad))) for got, (x, kern, st, pad) in zip(answers, inputs)):
            raise Mistake(f"{what} differs from F.conv2d: {mistake}", hint)
    got, want = answers[wrong[0]], _conv(*inputs[wrong[0]])
    hint = "out[i, j] = sum over u, v of padded[i*s + u, j*s + v] * kernel[u, v]."
    if got.shape == want.shape:
        raise Mistake(f"{what} differs from F.conv2d by up to {(got - want).abs().max().item():.3g}.", hint)
    if got.dim() == 2 and all(abs(a - b) <= 1 for a, b in zip(got.shape, want.shape)):
        raise Mistake(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}: off by one row or column.",
                      "there are (n + 2p - k) // s + 1 positions per side: check your range() bounds.")
    raise Mistake(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}.", hint)


@question("conv2d_loops", NOTEBOOK, points=2)
def check_conv2d_loops(conv2d_loops: Callable[..., Any]) -> str:
    return _check_conv2d(conv2d_loops, "conv2d_loops") + "."


@question("conv2d_fast", NOTEBOOK, points=2)
def check_conv2d_fast(conv2d_fast: Callable[..., Any]) -> str:
    verified = _check_conv2d(conv2d_fast, "conv2d_fast")
    h, w, k, s, p = VECTORISED_CASE
    pixels = output_size_reference(h, k, s, p) * output_size_reference(w, k, s, p)
    with _CountTorchCalls() as counter:
        conv2d_fast(torch.randn(h, w), torch.randn(k, k), stride=s, padding=p)
    if counter.calls > pixels // 5:
        raise Mistake(f"conv2d_fast made {counter.calls} torch calls for a {h}x{w} image ({pixels} output "
                      "pixels): it still works one output pixel at a time.",
                      "gather all patches at once with F.unfold (im2col), then one matrix product.")
    return f"{verified}, with {counter.calls} torch calls for {pixels} output pixels."


def _edge_response(kernel: torch.Tensor, image: torch.Tensor) -> float:
    """Largest |response| of `kernel` over the valid part of `image` (H, W)."""
    return F.conv2d(image[None, None], kernel[None, None]).abs().max().item()


@question("horizontal_edge_kernel", NOTEBOOK)
def check_horizontal_edge_kernel(horizontal_edge_kernel: Any) -> str:
    answer = horizontal_edge_kernel() if callable(horizontal_edge_kernel) else horizontal_edge_kernel
    kernel = expect_shape(answer, (3, 3), "the kernel", "return a 3x3 tensor.")
    scale = kernel.abs().sum().item()
    if scale == 0:
        raise Mistake("the kernel is all zeros: it responds to nothing.", "start from Sobel y.")
    bars = []
    for row, width in [(3, 1), (5, 2), (4, 3)]:
        bar = torch.zeros(12, 12, dtype=torch.float64)
        bar[row:row + width] = 1.0
        bars.append(bar)
    horizontal = max(_edge_response(kernel, bar) for bar in bars)
    vertical = max(_edge_response(kernel, bar.T) for bar in bars)
    flat = _edge_response(kernel, torch.full((5, 5), 1.0, dtype=torch.float64))
    if flat > 1e-6 * scale:
        raise Mistake(f"the kernel responds to a flat patch (response {flat:.3g}): it also reacts to brightness, "
                      "not only to edges.", "make the weights sum to 0.")
    if vertical > horizontal:
        raise Mistake(f"the kernel responds to vertical strokes ({vertical:.3g}) more than to horizontal ones "
                      f"({horizontal:.3g}): that is a vertical-edge kernel like Sobel x.", "transpose it.")
    if horizontal < 1e-6 * scale:
        raise Mistake("the kernel gives 0 on horizontal strokes.", "weight the row above and the row below "
                      "with opposite signs, like Sobel y.")
    if vertical > 0.1 * horizontal:
        raise Mistake(f"the kernel also responds to vertical strokes ({vertical:.3g} against {horizontal:.3g} "
                      "for horizontal ones).", "make every column of weights sum to 0, e.g. rows -1 -2 -1 / "
                      "0 0 0 / 1 2 1.")
    return (f"responds to horizontal strokes ({horizontal:.3g}), not to vertical ones ({vertical:.3g}) "
            "nor to flat regions.")
