"""Questions of notebook 01 (convolution kernels): output size, a conv layer's output shape, conv2d by loops
and vectorised, a padding bug to fix, an edge kernel, the response to a single bright pixel, a parameter count,
the backward pass."""
from __future__ import annotations

import re
from itertools import product
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import output_size as output_size_reference
from . import Mistake, question, written_question
from .conv_backward import CONV_BUILTINS, check_conv2d_backward, check_same_conv
from .tools import case_generator, case_random
from .tools import Watch, as_tensor, calling, expect_count, expect_shape, forbid, is_integer, source_of

NOTEBOOK = "01_convolution_kernels"
# (image height, width, kernel side, stride, padding, dtype): strides that do not divide evenly,
# non-square images, float32 and float64, so that no hard-coded or half-right answer fits them all.
CONV_CASES = [(6, 7, 3, 1, 0, torch.float64), (7, 5, 3, 1, 1, torch.float64), (9, 8, 3, 2, 0, torch.float64),
              (10, 11, 5, 3, 2, torch.float64), (12, 9, 2, 2, 1, torch.float32)]
# edge sizes: a 1x1 kernel with and without padding (where "padding = k // 2" and an unpadded slice show)
EDGE_CASES = [(5, 6, 1, 1, 1, torch.float64), (4, 7, 1, 2, 0, torch.float64)]
# two image sides for the vectorisation test: the work of a loop over output pixels grows 9-fold between them
LOOP_SIDES, LOOP_KERNEL = (8, 24), 3
SIZE_CASES = [(28, 3, 1, 0), (28, 3, 1, 1), (28, 5, 2, 2), (15, 4, 2, 0), (13, 5, 3, 2), (100, 7, 4, 3),
              (7, 3, 3, 1), (10, 3, 1, 2)]
LIBRARY_CONV = re.compile(r"\.(correlate2d|convolve2d|correlate|convolve|fftconvolve|oaconvolve)\s*\(")


def size_cases() -> list[tuple[int, int, int, int]]:
    """SIZE_CASES, a 1x1 kernel with padding, and two cases drawn for the student: (n, kernel, stride, padding)
    where the stride divides n + 2p - k evenly, and where it does not."""
    r, drawn = case_random(2), []
    for divides in (True, False):
        k, s = r.randint(1, 7), r.randint(2, 4)
        p = r.randint(0, k // 2 + 1)
        n = next(n for n in range(r.randint(k + 5, 60), 200) if ((n + 2 * p - k) % s == 0) == divides)
        drawn.append((n, k, s, p))
    return SIZE_CASES + [(9, 1, 2, 1)] + drawn


def _size_slips(n: int, k: int, s: int, p: int) -> list[tuple[Any, str]]:
    """(wrong size, what went wrong) for the common slips, most telling first."""
    return [
        ((n + 2 * p - k) // s, "one too few: the count of window positions is one more than the number of "
                               "steps between them (add 1)."),
        ((n + 2 * p - k) // s + 2, "one window too many."),
        (-(-(n + 2 * p - k) // s) + 1, "rounded up: a last window that hangs over the padded edge does not count."),
        ((n - k) // s + 1, "padding ignored: the answer is right only where padding is 0."),
        ((n + p - k) // s + 1, "padding counted on one side only: padding adds p pixels on each side."),
        (n + 2 * p - k + 1, "stride ignored: the answer is right only where stride is 1."),
    ]


def _count_mistake(value: Any, want: int, call: str) -> Mistake | None:
    """The Mistake `expect_count` raises for one case (a float, a bool, a wrong number), or None if right."""
    try:
        expect_count(value, want, call)
    except Mistake as m:
        return m
    return None


@question("output_size", NOTEBOOK, hints=(
    "Draw a row of n + 2p cells and slide a window of k cells over it, s cells at a time, starting at the left "
    "edge. Count the positions where the whole window fits, e.g. for n=7, k=3, stride 2: starts 0, 2, 4.",
    "The last start must leave k cells for the window: it is at most n + 2p - k. Starts are 0, s, 2s, ..., so "
    "count the multiples of s up to that, rounding down (a window hanging over the edge does not count); the "
    "answer is a count, an int."),
    reveal="out = (n + 2 * padding - kernel_size) // stride + 1  (// rounds down and keeps an int).")
def check_output_size(output_size: Callable[..., int]) -> str:
    cases = size_cases()
    wanted = [output_size_reference(*case) for case in cases]
    answers = [output_size(n, k, stride=s, padding=p) for n, k, s, p in cases]
    mistakes = [_count_mistake(got, want, f"output_size(n={n}, kernel_size={k}, stride={s}, padding={p})")
                for got, want, (n, k, s, p) in zip(answers, wanted, cases)]
    first = next((i for i, m in enumerate(mistakes) if m is not None), None)
    if first is None:
        return (f"output_size returns the right int on {len(cases)} cases, also where the stride does not "
                "divide n + 2p - k, e.g. n=15, k=4, stride 2, padding 0 -> 6.")
    mistake, got = mistakes[first], answers[first]
    if not is_integer(got):
        raise mistake                                     # a float or another type: expect_count says so
    slips = [(size, what) for size, what in _size_slips(*cases[first]) if got == size]
    explained = lambda what: sum(answers[i] == size for i, case in enumerate(cases)
                                 for size, w in _size_slips(*case) if w == what)
    what = max(slips, key=lambda slip: explained(slip[1]))[1] if slips else _size_diagnosis(mistakes)
    said = mistake.message.rstrip(".") + (f": {what}" if what else ".")
    raise Mistake(said, "run hint('output_size') for a way to count them.")


def _size_diagnosis(mistakes: list[Mistake | None]) -> str:
    """What the right and the wrong cases have in common, when no named slip explains the first wrong one."""
    cases = size_cases()
    right = [case for case, m in zip(cases, mistakes) if m is None]
    wrong = [case for case, m in zip(cases, mistakes) if m is not None]
    if right and all(s == 1 for _, _, s, _ in right) and any(s > 1 for _, _, s, _ in wrong):
        return "right at stride 1, wrong at larger strides: look at how the stride enters."
    if right and all(p == 0 for *_, p in right):
        return "right without padding, wrong with padding: look at how the padding enters."
    return ""


PREDICT_LAYER, PREDICT_BATCH = dict(in_channels=3, out_channels=16, kernel_size=5, stride=2, padding=1), (8, 3, 32, 32)


def _as_shape(value: Any) -> tuple:
    """A predicted shape as a tuple of its entries (a tuple, list, torch.Size or 1-D array)."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise Mistake(f"predicted_shape should be a tuple such as (8, 3, 32, 32), got {type(value).__name__}: "
                      f"{value!r:.60}.")
    return tuple(value)


@question("conv_output_shape", NOTEBOOK, answer_name="predicted_shape", kind="predict", hints=(
    "A conv layer's output is (N, C_out, H_out, W_out): which of these does the layer change, and which does "
    "it keep from the input batch?",
    "The batch size N stays; the channel count becomes out_channels (one map per filter); each side follows "
    "output_size with the layer's kernel, stride and padding."),
    reveal="(8, 16, (32 + 2*1 - 5) // 2 + 1, same) = (8, 16, 15, 15).")
def check_conv_output_shape(predicted_shape: Any) -> str:
    n, c, h, w = PREDICT_BATCH
    layer = PREDICT_LAYER
    side = output_size_reference(h, layer["kernel_size"], layer["stride"], layer["padding"])
    truth = tuple(nn.Conv2d(**layer)(torch.zeros(PREDICT_BATCH)).shape)
    got = _as_shape(predicted_shape)
    why = (f"N = {n} stays, C_out = {layer['out_channels']} filters, each side "
           f"({h} + 2*{layer['padding']} - {layer['kernel_size']}) // {layer['stride']} + 1 = {side}")
    if got == truth and all(isinstance(d, int) and not isinstance(d, bool) for d in got):
        return f"predicted {truth}: {why}."
    said = f"predicted {got}"
    if len(got) == 3:
        raise Mistake(f"{said}: the batch dimension is missing; a layer keeps one output per image of the batch.",
                      "the shape has four entries, (N, C, H, W).")
    if len(got) != 4:
        raise Mistake(f"{said}: a conv layer's output has four entries, (N, C, H, W).",
                      "run hint('conv_output_shape').")
    if any(not isinstance(d, int) or isinstance(d, bool) for d in got):
        raise Mistake(f"{said}: {[d for d in got if not isinstance(d, int)][0]!r} is not a whole number; a side "
                      "counts window positions.", "a window that does not fit is not counted: round down.")
    if got[1] == c:
        raise Mistake(f"{said}: {c} channels is the input's count; the output has one channel per filter.",
                      "look at out_channels.")
    if got[1:3] == (side, side) and got[3] == layer["out_channels"]:
        raise Mistake(f"{said}: channels last; PyTorch keeps the channels second, (N, C, H, W).",
                      "the order is batch, channels, height, width.")
    sides = {side + 1: "one too many per side: the side was rounded up, but a window hanging over the padded "
             "edge is not computed.",
             side - 1: "one too few per side: either the padding was left out or the +1 for the first window "
             "position is missing.",
             h + 2 * layer["padding"] - layer["kernel_size"] + 1: "the stride is ignored: stride 2 computes every "
             "second position only."}
    if got[0] == n and got[1] == layer["out_channels"] and got[2] in sides:
        raise Mistake(f"{said}: {sides[got[2]]}", "run hint('conv_output_shape') for more.")
    raise Mistake(f"{said}: not the shape this layer gives; compare the entries one by one, N, then C_out, then "
                  "the sides. The next cell measures it.", "run hint('conv_output_shape').")


def _conv(image: torch.Tensor, kernel: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    return F.conv2d(image[None, None], kernel[None, None], stride=stride, padding=padding)[0, 0]


KERNEL_SLIPS = {"": lambda w: w, "flip": lambda w: w.flip(0, 1), "transpose": lambda w: w.T}
PAD_SLIPS = {"": lambda p: (p, p, p, p), "no pad": lambda p: (0, 0, 0, 0), "one side": lambda p: (p, 0, p, 0)}
SLIP_WORDS = {
    "flip": "the kernel is turned by 180° (flipped): that is a true convolution, but conv2d here, like PyTorch's, "
            "is a cross-correlation, which uses the kernel as it is",
    "transpose": "the kernel is transposed: its rows act as columns",
    "no pad": "the zero padding is missing: the output has the values of padding 0",
    "one side": "the image is padded on one side only (top and left)",
    "stride": "the window moves one pixel at a time whatever the stride",
    "last": "the last output row and column stay 0: the loops stop one position short",
}
SLIP_HINTS = {"flip": "use kernel[u, v] as it is, without flipping.", "transpose": "kernel[u, v] weights the pixel u "
              "rows down and v columns right of the patch's corner.", "no pad": "pad the image on every side first.",
              "one side": "F.pad's (left, right, top, bottom) needs p in all four.", "stride": "with stride s the "
              "windows of neighbouring output pixels start s pixels apart.",
              "last": "count the rows of your range() against the output's rows."}


def _slip_outputs(image: torch.Tensor, kernel: torch.Tensor, stride: int, padding: int) -> dict[tuple, torch.Tensor]:
    """Output of every combination of slips (kernel, padding, stride, last row missing) on one case."""
    outputs = {}
    kernels = torch.stack([slip(kernel) for slip in KERNEL_SLIPS.values()])[:, None]     # one conv per pad, stride
    for (pname, pslip), sname in product(PAD_SLIPS.items(), ("", "stride")):
        maps = F.conv2d(F.pad(image, pslip(padding))[None, None], kernels, stride=1 if sname else stride)[0]
        for kname, out in zip(KERNEL_SLIPS, maps):
            outputs[tuple(w for w in (kname, pname, sname) if w)] = out
            last = out.clone()
            if min(last.shape) > 1:
                last[-1], last[:, -1] = 0, 0
                outputs[tuple(w for w in (kname, pname, sname, "last") if w)] = last
    return outputs


def _matches(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and bool(torch.allclose(got, want, atol=1e-4, rtol=1e-4))


def _case_name(name: str, case: tuple) -> str:
    h, w, k, s, p, dtype = case
    return f"{name}(image {h}x{w}, kernel {k}x{k}, stride={s}, padding={p}) in {str(dtype)[6:]}"


def _pattern(passed: list[bool]) -> str:
    """What the passing and failing cases have in common: stride 1, or padding 0."""
    right = [case for case, ok in zip(conv_cases(), passed) if ok]
    wrong = [case for case, ok in zip(conv_cases(), passed) if not ok]
    tests = [(lambda c: c[3] == 1, "right at stride 1, wrong at stride {}: look at where each window starts "
              "when the stride is not 1", 3),
             (lambda c: c[4] == 0, "right without padding, wrong with padding {}: look at the padding and where "
              "the windows sit in the padded image", 4)]
    for holds, words, field in tests:
        if right and all(holds(c) for c in right) and not any(holds(c) for c in wrong):
            return words.format(wrong[0][field])
    return ""


def conv_cases() -> list[tuple]:
    """CONV_CASES and EDGE_CASES, then two cases drawn for the student: a stride that divides the padded
    height evenly and one that does not, kernels from 1x1 up, random widths."""
    r, drawn = case_random(1), []
    for divides, dtype in [(True, torch.float64), (False, torch.float32)]:
        k, s = r.randint(1, 4), r.randint(2, 3)
        p = r.randint(0, max(k - 1, 1))
        h = next(h for h in range(r.randint(k + 3, 11), 30) if ((h + 2 * p - k) % s == 0) == divides)
        drawn.append((h, r.randint(k + 3, 12), k, s, p, dtype))
    return CONV_CASES + EDGE_CASES + drawn


def _run_conv_cases(conv2d: Callable[..., Any], name: str) -> str:
    """Compare `conv2d(image, kernel, stride, padding)` with F.conv2d on every case; name the slip seen first."""
    g = case_generator(1)
    cases, specs = [], conv_cases()
    for h, w, k, s, p, dtype in specs:                 # every reference before the student's code runs
        image = torch.randn(h, w, generator=g, dtype=torch.float64)
        kernel = torch.randn(k, k, generator=g, dtype=torch.float64)
        cases.append((image, kernel, s, p, _slip_outputs(image, kernel, s, p)))
    answers = []
    with Watch(CONV_BUILTINS) as watch:
        for (image, kernel, s, p, _), case in zip(cases, specs):
            with calling(_case_name(name, case)):
                image, kernel = image.to(case[-1], copy=True), kernel.to(case[-1], copy=True)
                answers.append(conv2d(image, kernel, stride=s, padding=p))
    forbid(watch.used, name, "loop over output pixels, or gather the patches (F.unfold) and use one matrix product.")
    _forbid_library_conv(conv2d, name)
    answers = [as_tensor(a, f"{name}'s result") for a in answers]
    passed = [_matches(got, case[4][()]) for got, case in zip(answers, cases)]
    if all(passed):
        return (f"{name} matches F.conv2d on {len(specs)} cases (padding, strides, 1x1 kernels, non-square images, "
                "float32/64)")
    first = passed.index(False)
    got, (*_, slips) = answers[first], cases[first]
    what = _case_name(name, specs[first])
    named = next((key for key, out in slips.items() if key and _matches(got, out)), None)
    if named:
        raise Mistake(f"{what} differs from F.conv2d: " + "; and ".join(SLIP_WORDS[w] for w in named) + ".",
                      " ".join(SLIP_HINTS[w] for w in named) + f" More: hint({name!r}).")
    raise _conv_difference(got, slips[()], what, _pattern(passed), name)


def _conv_difference(got: torch.Tensor, want: torch.Tensor, what: str, pattern: str, name: str) -> Mistake:
    """The Mistake for a result no named slip explains: its shape, or where its values first differ."""
    more = f"run hint({name!r})."
    lead = f"{what}: {pattern}; " if pattern else f"{what}: "
    if got.shape == want.shape:
        bad = ((got - want).abs() > 1e-4 + 1e-4 * want.abs()).nonzero()[0].tolist()
        return Mistake(f"{lead}it differs from F.conv2d by up to {(got - want).abs().max().item():.3g}, first at "
                       f"output pixel {tuple(bad)}.", more)
    if got.squeeze().shape == want.shape:
        return Mistake(f"{lead}shape {tuple(got.shape)} keeps extra batch or channel dimensions; expected "
                       f"{tuple(want.shape)}.", "return a 2-D result, e.g. out[0, 0].")
    if got.dim() == 2 and tuple(got.shape) == tuple(want.shape)[::-1]:
        rows, cols = want.shape
        how = ("the right values in the right order, cut into rows of the wrong length"
               if _matches(got.flatten(), want.flatten()) else
               "the result transposed" if _matches(got, want.T) else "rows and columns swapped")
        return Mistake(f"{lead}shape {tuple(got.shape)}, expected {tuple(want.shape)}: {how}.",
                       f"the output has out_h = {rows} rows and out_w = {cols} columns: reshape(out_h, out_w), "
                       "rows first.")
    if got.dim() == 2 and all(abs(a - b) <= 1 for a, b in zip(got.shape, want.shape)):
        where = ("check your range() bounds" if name == "conv2d_loops" else
                 "check that the patches are taken with the convolution's padding and stride")
        return Mistake(f"{lead}shape {tuple(got.shape)}, expected {tuple(want.shape)}: off by one row or column.",
                       f"count the window positions per side as in output_size, and {where}.")
    return Mistake(f"{lead}shape {tuple(got.shape)}, expected {tuple(want.shape)}.", more)


def _forbid_library_conv(answer: Any, name: str) -> None:
    """A Mistake if the answer's own source calls a library convolution (SciPy, NumPy)."""
    try:
        found = LIBRARY_CONV.search(source_of(answer))
    except Mistake:
        return
    if found:
        raise Mistake(f"{name} calls {found[1]}(): the point of this exercise is to compute it yourself.",
                      "loop over output pixels, or gather the patches and use one matrix product.")


CONV_HINTS = (
    "Start from the lecture's correlate_loops (section 1): what changes with padding (section 2) and with "
    "a stride? Try your function on the 4x4 example of the lecture and compare with F.conv2d.",
    "Pad first (F.pad(image, (p, p, p, p))); the output has output_size(...) rows and columns; output pixel "
    "(i, j) is the sum of one k x k patch times the kernel, not flipped; with a stride the patches' corners "
    "are stride pixels apart.")
CONV_REVEAL = "out[i, j] = (padded[i*s : i*s + k, j*s : j*s + k] * kernel).sum(), for i < out_h, j < out_w."


@question("conv2d_loops", NOTEBOOK, points=2, hints=CONV_HINTS, reveal=CONV_REVEAL)
def check_conv2d_loops(conv2d_loops: Callable[..., Any]) -> str:
    return _run_conv_cases(conv2d_loops, "conv2d_loops") + "."


def _loop_growth(conv2d_fast: Callable[..., Any]) -> tuple[int, int, list[tuple[int, int]]]:
    """(growth of lines run, growth of torch calls, [(lines, calls)] per side) between the two LOOP_SIDES."""
    g = case_generator(2)
    inputs = [(torch.randn(n, n, generator=g), torch.randn(LOOP_KERNEL, LOOP_KERNEL, generator=g))
              for n in LOOP_SIDES]
    counts = []
    for image, kernel in inputs:
        with Watch() as watch:
            conv2d_fast(image, kernel, stride=1, padding=0)
        counts.append((watch.lines, watch.calls))
    return counts[1][0] - counts[0][0], counts[1][1] - counts[0][1], counts


@question("conv2d_fast", NOTEBOOK, points=2, hints=(
    "A vectorised version does the same amount of Python work for a 10x10 and a 100x100 image: no Python loop "
    "(for, a comprehension, map) over output pixels or rows. A loop over the k x k kernel entries is fine.",
    "Put every patch in one column: F.unfold takes a batch of images with channels and the convolution's kernel "
    "size, padding and stride, and gives one column of k*k values per output pixel; then one matrix product "
    "with the kernel does every pixel at once. (In NumPy: numpy.lib.stride_tricks.sliding_window_view.)"),
    reveal="out = (kernel.reshape(1, -1) @ F.unfold(image[None, None], k, padding=p, "
    "stride=s)[0]).reshape(out_h, out_w).")
def check_conv2d_fast(conv2d_fast: Callable[..., Any]) -> str:
    verified = _run_conv_cases(conv2d_fast, "conv2d_fast")
    lines, calls, counts = _loop_growth(conv2d_fast)
    small, big = LOOP_SIDES
    pixels = [(n - LOOP_KERNEL + 1) ** 2 for n in LOOP_SIDES]
    ran = (f"for an image of side {small} it ran {counts[0][0]} lines of your code and {counts[0][1]} torch calls, "
           f"for side {big} {counts[1][0]} lines and {counts[1][1]} calls")
    if max(lines, calls) >= (pixels[1] - pixels[0]) // 4:
        raise Mistake(f"conv2d_fast still works one output pixel at a time: {ran}, growing with the "
                      f"{pixels[0]} -> {pixels[1]} output pixels, whether the loop is in Python, NumPy or torch.",
                      "gather all patches at once, then one matrix product; run hint('conv2d_fast').")
    if max(lines, calls) >= (big - small) // 2:
        raise Mistake(f"conv2d_fast still loops over output rows or columns: {ran}, growing with the side of "
                      "the image.", "gather all patches at once, then one matrix product; run hint('conv2d_fast').")
    return f"{verified}, and does the same work for images of side {small} and {big}: no loop over pixels."


@question("same_conv", NOTEBOOK, points=2, kind="debug", hints=(
    "Run buggy_same_conv and F.conv2d(image[None, None], kernel[None, None], padding=k // 2)[0, 0] on a small "
    "image with a kernel that is not symmetric, e.g. torch.arange(9.).reshape(3, 3), and compare them entry by entry.",
    "Two things differ: which output pixels get computed at all (look at the last row and column), and how the "
    "kernel is used (the lecture's section 4: PyTorch does not flip)."),
    reveal="Loop over range(image.shape[0]) and range(image.shape[1]), and multiply by kernel, not "
    "kernel.flip(0, 1).")
def check_same_conv_question(same_conv: Callable[..., Any]) -> str:
    return check_same_conv(same_conv)


@question("horizontal_edge_kernel", NOTEBOOK, hints=(
    "A horizontal edge is a change of brightness from one row to the next. What does Sobel x (section 5 of "
    "the lecture) measure, and how would you turn it to measure the other direction?",
    "Weight the row above and the row below the centre with opposite signs, and make the weights sum to 0 so "
    "that a flat patch gives 0; every column should sum to 0 so that vertical strokes give 0."),
    reveal="Sobel y: rows [-1, -2, -1], [0, 0, 0], [1, 2, 1] (Sobel x transposed).")
def check_horizontal_edge_kernel(horizontal_edge_kernel: Any) -> str:
    answer = horizontal_edge_kernel() if callable(horizontal_edge_kernel) else horizontal_edge_kernel
    kernel = expect_shape(answer, (3, 3), "the kernel", "return a 3x3 tensor.")
    scale = kernel.abs().sum().item()
    if scale == 0:
        raise Mistake("the kernel is all zeros: it responds to nothing.", "start from Sobel x, in the lecture.")
    bars = []
    for row, width in [(3, 1), (5, 2), (4, 3)]:
        bar = torch.zeros(12, 12, dtype=torch.float64)
        bar[row:row + width] = 1.0
        bars.append(bar)
    horizontal = max(_conv(bar, kernel, 1, 0).abs().max().item() for bar in bars)
    vertical = max(_conv(bar.T, kernel, 1, 0).abs().max().item() for bar in bars)
    flat = _conv(torch.full((5, 5), 1.0, dtype=torch.float64), kernel, 1, 0).abs().max().item()
    if flat > 1e-6 * scale:
        raise Mistake(f"the kernel responds to a flat patch (response {flat:.3g}): it also reacts to brightness, "
                      "not only to edges.", "make the weights sum to 0.")
    if vertical > horizontal:
        raise Mistake(f"the kernel responds to vertical strokes ({vertical:.3g}) more than to horizontal ones "
                      f"({horizontal:.3g}): that is a vertical-edge kernel like Sobel x.", "transpose it.")
    if horizontal < 1e-6 * scale:
        raise Mistake("the kernel gives 0 on horizontal strokes.", "weight the row above and the row below "
                      "with opposite signs.")
    if vertical > 0.1 * horizontal:
        raise Mistake(f"the kernel also responds to vertical strokes ({vertical:.3g} against {horizontal:.3g} "
                      "for horizontal ones).",
                      "make every column of weights sum to 0; run hint('horizontal_edge_kernel').")
    return (f"responds to horizontal strokes ({horizontal:.3g}), not to vertical ones ({vertical:.3g}) "
            "nor to flat regions.")


IMPULSE_KERNEL = torch.arange(1.0, 10.0).reshape(3, 3)          # rows 1 2 3 / 4 5 6 / 7 8 9
IMPULSE_SIDE = 5                                                 # a 5x5 image, its only 1 at the centre


def _impulse_block(kernel: torch.Tensor) -> torch.Tensor:
    """F.conv2d's output (padding 1) around the centre of a 5x5 image whose only non-zero pixel is a 1 there."""
    image = torch.zeros(IMPULSE_SIDE, IMPULSE_SIDE)
    image[IMPULSE_SIDE // 2, IMPULSE_SIDE // 2] = 1.0
    c = IMPULSE_SIDE // 2
    return _conv(image, kernel, 1, 1)[c - 1:c + 2, c - 1:c + 2]


def _as_block(value: Any) -> torch.Tensor:
    """A predicted 3x3 block (nested list, tuple, NumPy array or tensor) as a float64 tensor."""
    try:
        block = torch.as_tensor(np.asarray(value.tolist() if isinstance(value, torch.Tensor) else value,
                                           dtype=np.float64))
    except (TypeError, ValueError):
        raise Mistake(f"predicted_response should be a 3x3 grid of numbers, e.g. [[0, 0, 0], [0, 0, 0], [0, 0, 0]] "
                      f"with your numbers, or a tensor; got {type(value).__name__}: {value!r:.60}.") from None
    if tuple(block.shape) != (3, 3):
        raise Mistake(f"predicted_response has shape {tuple(block.shape)}: the block out[1:4, 1:4] is 3x3.",
                      "write it as three rows of three numbers.")
    return block


IMPULSE_SLIPS = [
    (lambda w: w, "that is the kernel as it is, which a TRUE convolution would give back; F.conv2d cross-correlates: "
     "work out which weight meets the 1 for output pixel (1, 1), whose window covers rows 1-3 and columns 1-3 of "
     "the padded image"),
    (lambda w: w.T, "that is the kernel transposed: rows and columns are swapped, but the 1 is met by the weight "
     "on the opposite side of the window from the output pixel, in both directions"),
    (lambda w: w.flip(0), "the rows are turned round but each row still reads left to right: what holds for "
     "the rows holds for the columns too"),
    (lambda w: w.flip(1), "each row reads right to left but the rows are in the kernel's order: what holds for "
     "the columns holds for the rows too"),
    (lambda w: torch.full((3, 3), float(w[1, 1])), "the centre weight everywhere: each output pixel's window "
     "holds the 1 at a different place, so each meets a different weight"),
]


@question("impulse_response", NOTEBOOK, answer_name="predicted_response", kind="predict", hints=(
    "Output pixel (i, j) sums the padded image's window whose top-left corner is at (i, j), each pixel times the "
    "kernel weight at the same place in the window. For output pixel (1, 1): where in its window is the 1?",
    "Do the same for output pixels (1, 3), (3, 1) and (2, 2). The further the output pixel lies from the 1, the "
    "further from the window's centre the 1 sits, on the opposite side."),
    reveal="[[9, 8, 7], [6, 5, 4], [3, 2, 1]]: the kernel turned by 180°. The output at (1, 1) sees the 1 at the "
    "bottom right of its window, where the weight is 9; a true convolution (kernel flipped first) gives the "
    "kernel itself.")
def check_impulse_response(predicted_response: Any) -> str:
    got, truth = _as_block(predicted_response), _impulse_block(IMPULSE_KERNEL)
    if torch.allclose(got, truth.double()):
        return ("right: F.conv2d's response to a single 1 is its kernel turned by 180°, since output pixel (i, j) "
                "meets the 1 at the opposite side of its window. The next cell measures it.")
    said = "predicted_response differs from what F.conv2d gives"
    for slip, why in IMPULSE_SLIPS:
        if torch.allclose(got, slip(IMPULSE_KERNEL).double()):
            raise Mistake(f"{said}: {why}. The next cell measures it.", "run hint('impulse_response').")
    raise Mistake(f"{said}. Every entry is one of the kernel's weights (the image holds a single 1): find, for "
                  "each output pixel, which weight meets the 1. The next cell measures it.",
                  "run hint('impulse_response').")


PARAMETER_LAYER = dict(in_channels=3, out_channels=16, kernel_size=5)


@question("conv_parameters", NOTEBOOK, kind="concept", hints=(
    "A layer's parameters are its weight tensor and its bias; what is the weight's shape (section 7 of the lecture)?",
    "The weight has one k x k slice per input channel for every output channel, and there is one bias per "
    "output channel."),
    reveal="C_out * C_in * k * k + C_out = 16 * 3 * 5 * 5 + 16 = 1216.")
def check_conv_parameters(conv_parameters: Any) -> str:
    c_in, c_out, k = PARAMETER_LAYER["in_channels"], PARAMETER_LAYER["out_channels"], PARAMETER_LAYER["kernel_size"]
    truth = sum(p.numel() for p in nn.Conv2d(**PARAMETER_LAYER).parameters())
    slips = {c_out * c_in * k * k: "the bias is missing: one per output channel.",
             c_out * k * k + c_out: "the input channels are missing: each filter has a k x k slice per input channel.",
             c_out * k * k: "the input channels and the bias are missing.",
             c_in * k * k + 1: "that is one filter; the layer has one per output channel.",
             c_out * c_in * k + c_out: "k appears once; a kernel has k x k weights.",
             c_out * c_in * k * k + c_in: "one bias per output channel, not per input channel."}
    if conv_parameters in slips and not isinstance(conv_parameters, (bool, float)):
        raise Mistake(f"conv_parameters is {conv_parameters}: {slips[conv_parameters]}",
                      "run hint('conv_parameters').")
    if not is_integer(conv_parameters):
        expect_count(conv_parameters, truth, "conv_parameters")       # a float or another type: it says so
    if int(conv_parameters) != truth:
        raise Mistake(f"conv_parameters is {int(conv_parameters)}: not the count of the weight's entries and the "
                      "biases.", "run hint('conv_parameters').")
    return (f"{truth} = {c_out} filters x {c_in} channels x {k}x{k} weights + {c_out} biases, "
            "the count nn.Conv2d(3, 16, 5) has.")


@question("conv2d_backward", NOTEBOOK, points=2, kind="backward", hints=(
    "Let L = (out * grad_out).sum() and write out[i, j] as its sum over the patch. Which terms of L contain "
    "kernel[u, v]? Which contain one padded pixel x[a, b], and through which output pixels? Try it by hand "
    "on a 3x3 image and a 2x2 kernel.",
    "The kernel gradient is itself a cross-correlation: of the padded image with grad_out as the kernel. The "
    "image gradient is a 'full' cross-correlation: of grad_out padded by k - 1 with the kernel turned by 180°; "
    "it is the gradient of the padded image, so drop its border of `padding` pixels."),
    reveal="grad_kernel = conv2d_fast(image, grad_out, padding=p); grad_image = conv2d_fast(grad_out, kernel.flip(0, 1), "
    "padding=k - 1), then [p:H + p, p:W + p] of it (with p = 0 nothing is dropped).")
def check_conv2d_backward_question(conv2d_backward: Callable[..., Any]) -> str:
    return check_conv2d_backward(conv2d_backward)


written_question("weight_sharing", NOTEBOOK, points=2, hints=(
    "Shift the input image by one pixel to the right: what happens to each patch, and to the weights that "
    "multiply it?",
    "Every output pixel uses the same kernel, so a shifted input gives the same outputs, shifted. Pooling then "
    "takes the maximum over a window: what happens to it when the input moves by less than the window?"),
    reveal="Every output pixel applies the same kernel to its patch, so shifting the input shifts the feature "
    "map by the same amount (translation equivariance); a max-pool over a window keeps its maximum when "
    "the input moves by less than the window, so the pooled map barely changes (a small invariance).")
