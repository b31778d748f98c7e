"""Graders of notebook 01 that take apart a convolution: the padding bug to fix (`same_conv`) and the
backward pass of a single-channel cross-correlation (`conv2d_backward`). Registered in convolution.py."""
from __future__ import annotations

from itertools import product
from typing import Any, Callable

import torch
import torch.nn.functional as F

from . import Mistake
from .tools import case_generator, case_random
from .tools import Watch, as_tensor, forbid, rel_error

CONV_BUILTINS = {F.conv2d: "F.conv2d", F.conv1d: "F.conv1d", F.conv3d: "F.conv3d",
                 F.conv_transpose1d: "F.conv_transpose1d", F.conv_transpose2d: "F.conv_transpose2d",
                 F.conv_transpose3d: "F.conv_transpose3d", torch.convolution: "torch.convolution",
                 torch._convolution: "torch._convolution", torch.ops.aten.convolution: "aten.convolution",
                 torch.ops.aten.convolution.default: "aten.convolution"}
BACKWARD_BUILTINS = {**CONV_BUILTINS, torch.Tensor.backward: "Tensor.backward (autograd)",
                     torch.autograd.backward: "torch.autograd.backward", torch.autograd.grad: "torch.autograd.grad",
                     torch.ops.aten.convolution_backward: "convolution_backward (F.conv2d's own backward)",
                     torch.ops.aten.convolution_backward.default: "convolution_backward (F.conv2d's own backward)"}
SAME_CASES = [(6, 7, 3), (5, 8, 5), (9, 6, 3), (4, 5, 1)]      # image height, width, odd kernel side (1x1 too)
BACKWARD_CASES = [(6, 7, 3, 0), (7, 5, 3, 1), (8, 6, 2, 0), (9, 8, 4, 2), (5, 6, 1, 0), (4, 5, 1, 1)]  # h, w, k, padding
THRESHOLD = 1e-7


def _conv(image: torch.Tensor, kernel: torch.Tensor, padding: int = 0) -> torch.Tensor:
    return F.conv2d(image[None, None], kernel[None, None], padding=padding)[0, 0]


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    return got.shape == want.shape and bool(torch.allclose(got, want, atol=1e-6, rtol=1e-5))


def _same_slips(image: torch.Tensor, kernel: torch.Tensor) -> dict[tuple, torch.Tensor]:
    """Output of each combination of the two kinds of bug in buggy_same_conv, on one case."""
    k = kernel.shape[0]
    outputs = {}
    for flip, rows in product(("", "flip"), ("", "valid", "short")):
        out = _conv(image, kernel.flip(0, 1) if flip else kernel, k // 2).clone()
        stop = {"": None, "valid": k - 1, "short": 1}[rows]
        if stop:
            out[-stop:], out[:, -stop:] = 0, 0
        outputs[tuple(w for w in (flip, rows) if w)] = out
    return outputs


SAME_WORDS = {"flip": "the kernel is still flipped: F.conv2d, and this function, use it as it is",
              "valid": "the last k - 1 rows and columns stay 0: the loops still run over the positions of an "
                       "unpadded output",
              "short": "the last row and column stay 0: the loops stop one position short"}


def same_cases() -> list[tuple[int, int, int]]:
    """SAME_CASES and one case drawn for the student: (height, width, odd kernel side 1 to 5)."""
    r = case_random(3)
    k = r.choice((1, 3, 5))
    return SAME_CASES + [(r.randint(k + 2, 10), r.randint(k + 2, 10), k)]


def check_same_conv(same_conv: Callable[..., Any]) -> str:
    """Grade the fixed buggy_same_conv against F.conv2d with padding k // 2; name each bug left."""
    g, specs = case_generator(3), same_cases()
    cases = []
    for h, w, k in specs:
        image, kernel = torch.randn(h, w, generator=g, dtype=torch.float64), torch.randn(k, k, generator=g,
                                                                                        dtype=torch.float64)
        cases.append((image, kernel, _same_slips(image, kernel)))
    with Watch(CONV_BUILTINS) as watch:
        answers = [same_conv(image.clone(), kernel.clone()) for image, kernel, _ in cases]
    forbid(watch.used, "same_conv", "fix the two bugs in the loops of buggy_same_conv instead.")
    answers = [as_tensor(a, "same_conv's result") for a in answers]
    passed = [_close(got, slips[()]) for got, (*_, slips) in zip(answers, cases)]
    if all(passed):
        return (f"same_conv keeps the size and matches F.conv2d with padding k // 2 on {len(cases)} images, 1x1, 3x3 "
                "and 5x5.")
    first = passed.index(False)
    (h, w, k), got, slips = specs[first], answers[first], cases[first][2]
    what = f"same_conv(image {h}x{w}, kernel {k}x{k})"
    if got.shape != (h, w):
        raise Mistake(f"{what} has shape {tuple(got.shape)}: 'same' padding keeps the input's shape ({h}, {w}).",
                      "pad by k // 2 on every side and compute one output per input pixel.")
    named = next((key for key, out in slips.items() if key and _close(got, out)), None)
    if named:
        raise Mistake(f"{what}: " + "; and ".join(SAME_WORDS[n] for n in named) + ".", "run hint('same_conv').")
    raise Mistake(f"{what} differs from F.conv2d with padding {k // 2} by up to "
                  f"{(got - slips[()]).abs().max().item():.3g}.", "run hint('same_conv').")


def _backward_case(h: int, w: int, k: int, p: int, g: torch.Generator) -> dict:
    """Inputs, autograd's float64 gradients and the gradients of the common slips, for one case."""
    image, kernel = torch.randn(h, w, generator=g, dtype=torch.float64), torch.randn(k, k, generator=g,
                                                                                    dtype=torch.float64)
    x, weight = image.clone().requires_grad_(), kernel.clone().requires_grad_()
    out = _conv(x, weight, p)
    grad_out = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grad_image, grad_kernel = torch.autograd.grad(out, (x, weight), grad_out)
    full = _conv(F.pad(grad_out, (k - 1,) * 4), kernel.flip(0, 1))               # the padded image's gradient
    unflipped = _conv(F.pad(grad_out, (k - 1,) * 4), kernel)[p:p + h, p:p + w]
    return {"inputs": (image, kernel, grad_out, p), "image": grad_image, "kernel": grad_kernel,
            "image slips": {"the kernel is not turned by 180°: each padded pixel collects the kernel entries in the "
                            "reverse order of the forward pass": unflipped,
                            "it is the gradient of the padded image: its border of `padding` pixels belongs to the "
                            "zeros, not to the image": full},
            "kernel slips": {"it is flipped: the kernel gradient correlates the padded image with grad_out, "
                             "with nothing turned": grad_kernel.flip(0, 1),
                             "it is transposed": grad_kernel.T}}


def _pair(result: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's (grad_image, grad_kernel) as two float64 tensors, or a Mistake."""
    if isinstance(result, torch.Tensor) or not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Mistake(f"conv2d_backward returned {type(result).__name__}; return two gradients, "
                      "(grad_image, grad_kernel).", "end with `return grad_image, grad_kernel`.")
    return as_tensor(result[0], "grad_image"), as_tensor(result[1], "grad_kernel")


def _low_precision(value: Any) -> str:
    """The dtype's name if `value` is a tensor or array of fewer than 64 bits per float, else ''."""
    name = str(getattr(value, "dtype", "")).removeprefix("torch.")
    return name if name in ("float32", "float16", "bfloat16") else ""


def _gradient_mistake(got: torch.Tensor, want: torch.Tensor, slips: dict, what: str) -> str:
    """Why one gradient differs from autograd's, or '' if it is right."""
    if got.shape != want.shape:
        slip = next((why for why, out in slips.items() if out.shape == got.shape and _close(got, out)), "")
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}" + (f": {slip}" if slip else "")
    err = rel_error(got, want)
    if err < THRESHOLD:
        return ""
    slip = next((why for why, out in slips.items() if out.shape == got.shape and _close(got, out)), "")
    if slip:
        return f"{what}: {slip}"
    return f"{what}: relative error {err:.2e} against autograd in float64; it should be below {THRESHOLD:.0e}"


def backward_cases() -> list[tuple[int, int, int, int]]:
    """BACKWARD_CASES and one case drawn for the student: (height, width, kernel side 1 to 4, padding below it)."""
    r = case_random(4)
    k = r.randint(1, 4)
    return BACKWARD_CASES + [(r.randint(k + 2, 10), r.randint(k + 2, 10), k, r.randint(0, max(k - 1, 1)))]


def check_conv2d_backward(conv2d_backward: Callable[..., Any]) -> str:
    """Grade (grad_image, grad_kernel) of a padded single-channel cross-correlation against autograd in float64."""
    g, specs = case_generator(4), backward_cases()
    cases = [_backward_case(*case, g) for case in specs]      # autograd's answers first
    with Watch(BACKWARD_BUILTINS) as watch:
        results = [conv2d_backward(x.clone(), w.clone(), go.clone(), padding=p)
                   for x, w, go, p in (c["inputs"] for c in cases)]
    forbid(watch.used, "conv2d_backward", "write both gradients as cross-correlations, with your conv2d_fast "
           "or F.unfold and a matrix product.")
    pairs = [_pair(r) for r in results]
    low = [_low_precision(gradient) for r in results for gradient in r if _low_precision(gradient)]
    for (gi, gk), (h, w, k, p) in zip(pairs, specs):
        if gi.shape == (k, k) and gk.shape == (h, w) and (h, w) != (k, k):
            raise Mistake(f"conv2d_backward returned shapes {tuple(gi.shape)} and {tuple(gk.shape)}: the kernel's "
                          "gradient first.", "return grad_image (the image's shape) first, then grad_kernel.")
    worst = max(max(rel_error(gi, c["image"]) if gi.shape == c["image"].shape else 1.0,
                    rel_error(gk, c["kernel"]) if gk.shape == c["kernel"].shape else 1.0)
                for (gi, gk), c in zip(pairs, cases))
    if low and worst < 1e-4:
        raise Mistake(f"conv2d_backward returns {low[0]} gradients: the values are right up to the rounding of "
                      f"{low[0]} (relative error {worst:.1e}), but a gradient check needs float64 to tell a right "
                      "gradient from a slightly wrong one.", "compute in the inputs' dtype (float64): no .float().",
                      earned=1, credit="the right values")
    problems = [[_gradient_mistake(gi, c["image"], c["image slips"], "grad_image"),
                 _gradient_mistake(gk, c["kernel"], c["kernel slips"], "grad_kernel")]
                for (gi, gk), c in zip(pairs, cases)]
    if not any(any(p) for p in problems):
        return (f"both gradients match autograd in float64 on {len(cases)} cases (padding 0 to 2, kernels 1 to 4): "
                f"largest relative error {worst:.1e}, below {THRESHOLD:.0e}.")
    first = next(i for i, p in enumerate(problems) if any(p))
    h, w, k, p = specs[first]
    said = f"conv2d_backward(image {h}x{w}, kernel {k}x{k}, padding={p}): " + "; ".join(m for m in problems[first] if m)
    right = [specs[i][3] for i, ps in enumerate(problems) if not any(ps)]
    if right and all(pad == 0 for pad in right) and p > 0:
        said += ". Right without padding, wrong with it"
    for which, other in ((0, "grad_kernel"), (1, "grad_image")):
        if all(not ps[1 - which] for ps in problems):
            raise Mistake(said + ".", "run hint('conv2d_backward').", earned=1, credit=f"the right {other}")
    raise Mistake(said + ".", "run hint('conv2d_backward').")
