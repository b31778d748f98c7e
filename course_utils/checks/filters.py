"""Questions of notebook 04 (filter visualization): filters scaled and tiled for display, feature maps
through hooks, the map shape of an input whose sides do not halve evenly, receptive fields, which filters
prefer ink, the gradient of a convolution."""
from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data import MEAN, STD
from ..filters import feature_maps as feature_maps_reference
from ..kernels import receptive_field
from ..models import TutorialCNN, TwoLayerCNN
from . import Mistake, question, set_student, written_question
from .tools import case_generator, case_random
from .tools import (Watch, as_tensor, calling, expect_choice, expect_close, expect_count, expect_shape, forbid,
                    grad_check, rel_error)

NOTEBOOK = "04_filter_visualization"


def _seeded(model_class):
    """A model built from seed 0, without touching the global random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model_class()


def _hooked(model: torch.nn.Module, image: torch.Tensor, layer: str, train: bool) -> dict[str, torch.Tensor]:
    """The input and the output (C, H, W) of `layer` for one image, in training or eval mode."""
    seen = {}
    handle = model.get_submodule(layer).register_forward_hook(
        lambda m, inputs, output: seen.update(input=inputs[0][0].detach(), output=output[0].detach()))
    try:
        with torch.no_grad():
            model.train(train)(image[None])
    finally:
        handle.remove()
    return seen


def _close(got: Any, want: torch.Tensor) -> bool:
    t = as_tensor(got, "the maps")
    return t.shape == want.shape and bool(torch.allclose(t, want.double(), atol=1e-4, rtol=1e-4))


@question("feature_maps", NOTEBOOK, points=2, hints=(
    "A forward hook sees (module, inputs, output): keep the output, for the one image of a batch of one.",
    "Before the forward pass: model.eval() (BatchNorm uses its running statistics) and torch.no_grad(); "
    "after it, whatever happened, handle.remove() (try / finally)."),
    reveal="handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.update(o=o)); "
    "run model(image.unsqueeze(0)) in a try, remove the handle in the finally, return captured['o'][0].")
def check_feature_maps(feature_maps) -> str:
    image = torch.randn(1, 28, 28, generator=case_generator(2))
    cases = [(_seeded(TwoLayerCNN), "conv1"), (_seeded(TwoLayerCNN), "pool"),
             (_seeded(TutorialCNN), "layer1.3"), (_seeded(TutorialCNN), "layer2.0")]
    for model, layer in cases:
        model.train()
        with torch.no_grad():                          # give BatchNorm running statistics to use
            model(torch.randn(8, 1, 28, 28, generator=case_generator(3)))
        students = copy.deepcopy(model)                # still in training mode, as a student may leave it
        want = feature_maps_reference(model, image, [layer])[layer]      # before the student's code runs
        hooked, trained = _hooked(copy.deepcopy(model), image, layer, False), _hooked(model, image, layer, True)
        with calling(f"feature_maps(model, image of shape {tuple(image.shape)}, {layer!r})"):
            got = feature_maps(students, image.clone(), layer)
        if students.get_submodule(layer)._forward_hooks:
            raise Mistake(f"after feature_maps(model, image, {layer!r}) a hook is still registered on that layer.",
                          "keep the handle from register_forward_hook and call handle.remove() (in a finally).")
        if isinstance(got, torch.Tensor) and got.dim() == 4 and got.shape[0] == 1:
            raise Mistake(f"the maps for {layer!r} have shape {tuple(got.shape)}; return (C, H, W) for the one image.",
                          "index the batch dimension away: output[0].")
        what = f"the maps of {type(model).__name__}.{layer}"
        if not _close(got, want) and _close(got, hooked["input"]):
            raise Mistake(f"{what} are the layer's input, not its output.",
                          "a forward hook is called as fn(module, inputs, output): keep the third argument.")
        if not _close(got, want) and _close(got, trained["output"]):
            raise Mistake(f"{what} are the training-mode ones: BatchNorm normalised with this one image's "
                          "statistics instead of its running averages.",
                          "call model.eval() before the forward pass.")
        expect_close(got, want, what, "call model.eval() first (BatchNorm and dropout behave differently in "
                     "training), and record the hooked module's output, not its input.", atol=1e-4)
    return "maps of conv1 and pool (two-layer CNN), layer1.3 and layer2.0 (tutorial CNN) match; hooks removed."


def per_filter_scaled(weight: torch.Tensor) -> torch.Tensor:
    """Each filter weight[o] (all its input channels) scaled to [0, 1] on its own; a constant filter becomes 0."""
    flat = weight.reshape(len(weight), -1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    shape = (-1,) + (1,) * (weight.dim() - 1)
    span = (high - low).view(shape)
    return torch.where(span > 0, (weight - low.view(shape)) / span.clamp_min(1e-300), torch.zeros_like(weight))


def _bank_scaled(weight: torch.Tensor) -> torch.Tensor:
    return (weight - weight.min()) / (weight.max() - weight.min())


def _kernel_scaled(weight: torch.Tensor) -> torch.Tensor:
    c_out, c_in, kh, kw = weight.shape
    return per_filter_scaled(weight.reshape(c_out * c_in, kh, kw)).reshape(weight.shape)


def _abs_scaled(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(len(weight), -1).abs().max(dim=1).values.view(-1, 1, 1, 1).reciprocal() * weight


def _uneven_bank(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random weights of `shape` whose filter o is (o + 1) times as strong, so that a shared scale shows."""
    weight = torch.randn(*shape, generator=case_generator(seed), dtype=torch.float64)
    return weight * torch.arange(1, shape[0] + 1, dtype=torch.float64).view(-1, 1, 1, 1)


SCALING_SLIPS = [  # (what the slip computes, what went wrong, hint)
    (_bank_scaled, "it scales the whole bank at once (one min and max for all filters), so the weak filters "
     "come out as flat grey next to the strong ones.", "take the min and max of each filter separately."),
    (_kernel_scaled, "it scales each k x k kernel weight[o, i] on its own: within one filter the input channels "
     "no longer show which of them the filter weighs most.", "take the min and max over a whole filter "
     "weight[o]: all its input channels and positions together."),
    (_abs_scaled, "it divides by the largest |weight|: that gives [-1, 1], not [0, 1].",
     "subtract the filter's minimum first, then divide by its range."),
    (lambda w: (_abs_scaled(w) + 1) / 2, "it puts 0 at 0.5 (scaled by the largest |weight|): the filter's "
     "smallest weight should become 0 and its largest 1.", "subtract the filter's minimum, divide by its range."),
]


def _changed_in_place(passed: Any, original: torch.Tensor) -> bool:
    return isinstance(passed, torch.Tensor) and not torch.equal(passed.detach(), original)


def _scaling_mistake(what: str, got: torch.Tensor, want: torch.Tensor, slipped: list[bool]) -> Mistake:
    """What is wrong with scaled filters `got` (against `want`), given which SCALING_SLIPS fit every case."""
    slip = next(((m, h) for (_, m, h), fits in zip(SCALING_SLIPS, slipped) if fits), None)
    if slip:
        return Mistake(f"normalize_filters is wrong for {what}: {slip[0]}", slip[1] + " See hint('normalize_filters').")
    lows, highs = got.reshape(len(got), -1).amin(dim=1), got.reshape(len(got), -1).amax(dim=1)
    if lows.min() < -1e-6 or highs.max() > 1 + 1e-6:
        return Mistake(f"for {what} the values run from {lows.min():.3g} to {highs.max():.3g}, outside [0, 1].",
                       "see hint('normalize_filters').")
    return Mistake(f"for {what} the values differ from each filter scaled to [0, 1] by up to "
                   f"{(got - want).abs().max():.3g}.",
                   "each filter's smallest weight should become 0, its largest 1, the rest in proportion.")


def _check_constant_filter(normalize_filters: Callable[[Any], Any]) -> None:
    """A Mistake unless a bank whose filter 1 is constant comes out finite, filter 1 constant in [0, 1]."""
    constant = _uneven_bank((3, 1, 3, 3), 7)
    constant[1] = 0.25
    want = per_filter_scaled(torch.cat([constant[:1], constant[2:]]))            # before the student's code runs
    got = as_tensor(normalize_filters(constant.clone()), "the result for a bank with a constant filter")
    filter_1 = got[1] if got.shape == constant.shape else got.new_full((1,), float("nan"))
    if not (torch.isfinite(filter_1).all() and filter_1.min() >= 0 and filter_1.max() <= 1
            and filter_1.max() == filter_1.min()):
        raise Mistake(f"filter 1, whose weights are all 0.25, came out as {filter_1.flatten()[:3].tolist()}...: "
                      "its max - min is 0, so dividing by it gives 0 / 0 = nan.",
                      "map a constant filter to a constant in [0, 1] (e.g. 0): use torch.where / np.where, or "
                      "divide by max(high - low, a tiny number).")
    expect_close(torch.cat([got[:1], got[2:]]), want, "the other filters of a bank with a constant filter",
                 "scale each filter on its own.")


@question("normalize_filters", NOTEBOOK, points=2, kind="implement", hints=(
    "Look at one filter at a time: weight[o] holds all of its input channels. Its smallest weight should "
    "become 0 and its largest 1, whatever the other filters hold.",
    "Flatten to (C_out, -1) to take a min and a max per row, and reshape them so that they broadcast back "
    "over (C_in, k, k). For NumPy: np.asarray(...).reshape(...).min(axis=1); for torch: .amin(dim=1)."),
    reveal="low, high = per-filter min and max of the flattened weight; (weight - low) / (high - low), with a "
    "constant filter (high == low) mapped to 0 instead of 0 / 0.")
def check_normalize_filters(normalize_filters: Callable[[Any], Any]) -> str:
    r = case_random(11)
    c_in = r.randrange(1, 4)
    drawn = (r.randrange(2, 9), c_in, *(2 * (r.choice((2, 3, 4) if c_in == 1 else (1, 2, 3)),)))
    cases = [("a (8, 1, 3, 3) torch weight", _uneven_bank((8, 1, 3, 3), 4).float(), "torch"),
             (f"a {drawn} torch weight", _uneven_bank(drawn, 12).float(), "torch"),
             ("a (4, 3, 5, 5) torch weight that requires grad", _uneven_bank((4, 3, 5, 5), 5), "grad"),
             ("a (6, 2, 3, 3) NumPy array", _uneven_bank((6, 2, 3, 3), 6), "numpy")]
    wanted = [per_filter_scaled(w.double()) for _, w, _ in cases]                 # before the student's code runs
    slips = [[f(w.double()) for f, _, _ in SCALING_SLIPS] for _, w, _ in cases]
    answers = []
    for what, weight, style in cases:
        passed = weight.numpy().copy() if style == "numpy" else weight.clone().requires_grad_(style == "grad")
        with calling("normalize_filters", passed):
            got = normalize_filters(passed)
        if _changed_in_place(passed, weight):
            raise Mistake(f"normalize_filters changed the weights passed to it ({what}): displaying a model's "
                          "filters must leave the model as it was.", "compute new values (w - low) instead of "
                          "changing the input in place (w -= low); note that .detach() shares memory.")
        answers.append(expect_shape(got, tuple(weight.shape), f"the result for {what}",
                                    "return one value per weight, in the input's shape."))
    slipped = [all(torch.allclose(got, case_slips[k], atol=1e-5) for got, case_slips in zip(answers, slips))
               for k in range(len(SCALING_SLIPS))]
    for (what, _, _), got, want in zip(cases, answers, wanted):
        if not torch.allclose(got, want, atol=1e-5):
            raise _scaling_mistake(what, got, want, slipped)
    _check_constant_filter(normalize_filters)
    return (f"each filter of (8, 1, 3, 3), {drawn} and (4, 3, 5, 5) torch weights and a (6, 2, 3, 3) NumPy array "
            "is scaled to [0, 1] on its own, the inputs are untouched, and a constant filter stays finite.")


def _tiles(weight: torch.Tensor, scaling: Callable, in_major: bool, transposed: bool) -> torch.Tensor:
    c_out, c_in, kh, kw = weight.shape
    w = scaling(weight)
    w = w.permute(1, 0, 2, 3) if in_major else w
    w = w.transpose(2, 3) if transposed else w
    return w.reshape(c_out * c_in, kh, kw)


TILE_BUGS = {"bank": "it scales the whole bank at once: the weak filters come out as flat grey.",
             "kernel": "it scales each kernel weight[o, i] on its own, not each filter weight[o].",
             "in_major": "the tiles are in input-channel-major order (tile i * C_out + o): permute swapped the "
                         "out and in axes of the (out, in, h, w) layout.",
             "transposed": "each k x k kernel is transposed: permute also swapped the (h, w) axes, so a "
                           "horizontal edge filter would be drawn vertical."}


@question("filter_tiles", NOTEBOOK, points=2, kind="debug", hints=(
    "Run filter_tiles_buggy on a copy of a small weight and compare: did the weight you passed change? Is "
    "tile 1 equal to weight[0, 1]? Are the weak filters grey?",
    "Four bugs: .detach() shares memory, so -= and /= rewrite the model's weights; one min and max serve the "
    "whole bank; permute(1, 0, 3, 2) swaps both (out, in) and (h, w)."),
    reveal="w = weight.detach(); per filter: flat = w.reshape(C_out, -1), low = flat.amin(1), high = flat.amax(1); "
    "w = (w - low.view(-1, 1, 1, 1)) / (high - low).view(-1, 1, 1, 1); return w.reshape(C_out * C_in, kh, kw).")
def check_filter_tiles(filter_tiles: Callable[[torch.Tensor], Any]) -> str:
    r = case_random(13)
    drawn = (r.randrange(2, 7), r.randrange(2, 5), *(2 * (r.randrange(2, 6),)))     # C_in, k >= 2: every bug shows
    weights = [_uneven_bank((4, 3, 3, 3), 8).float(), _uneven_bank((3, 2, 5, 5), 9).float(),
               _uneven_bank(drawn, 14).float()]
    scalings = {"filter": per_filter_scaled, "bank": _bank_scaled, "kernel": _kernel_scaled}
    variants = {(s, i, t): [_tiles(w.double(), scalings[s], i, t) for w in weights]     # before the student's code
                for s in scalings for i in (False, True) for t in (False, True)}
    bugs, answers = [], []
    for weight in weights:
        passed = weight.clone().requires_grad_()
        with calling("filter_tiles", passed):
            got = filter_tiles(passed)
        if _changed_in_place(passed, weight) and not bugs:
            bugs.append("it changes the weights passed to it: .detach() shares memory with the weight, so the "
                        "in-place -= and /= rewrite the model's filters.")
        c_out, c_in, kh, kw = weight.shape
        t = as_tensor(got, "filter_tiles' result")
        t = t.squeeze(1) if t.dim() == 4 and t.shape[1] == 1 else t
        answers.append(expect_shape(t, (c_out * c_in, kh, kw), f"filter_tiles' result for a {tuple(weight.shape)} "
                                    "weight", "one k x k tile per (output, input) channel pair."))
    found = next((c for c, tiles in variants.items()
                  if all(torch.allclose(got, want, atol=1e-5) for got, want in zip(answers, tiles))), None)
    if found is None:
        err = (answers[0] - variants["filter", False, False][0]).abs().max().item()
        raise Mistake(f"filter_tiles' tiles differ from the fixed version by up to {err:.3g}, and not in a way "
                      "one of the known bugs explains.",
                      "start again from filter_tiles_buggy; see hint('filter_tiles').")
    scaling, in_major, transposed = found
    bugs += [TILE_BUGS[name] for name, left in [(scaling, scaling != "filter"), ("in_major", in_major),
                                                 ("transposed", transposed)] if left]
    if bugs:
        fixed = 4 - len(bugs)
        raise Mistake(f"{len(bugs)} bug{'s' * (len(bugs) > 1)} left: " + " ".join(
            f"({k}) {b}" for k, b in enumerate(bugs, 1)), "see hint('filter_tiles').", earned=fixed / 2,
            credit=f"fixing {fixed} of the 4 bugs")
    return (f"tiles of (4, 3, 3, 3), (3, 2, 5, 5) and {drawn} weights are in (out, in) order, untransposed, "
            "each filter "
            "scaled on its own, and the weights passed in are untouched.")


def pool_input_size(student_id: str = "") -> tuple[int, int]:
    """The (H, W) of the input drawn for `student_id` in exercise odd_pool_shape: one side odd, one even."""
    set_student(student_id)
    return _pool_input_size()


def _pool_input_size() -> tuple[int, int]:
    r = case_random(21)
    odd, even = r.randrange(15, 42, 2), r.choice([n for n in range(16, 42, 2) if n != 28])
    return (odd, even) if r.random() < 0.5 else (even, odd)


def _pool_shape(height: int, width: int) -> tuple[int, int, int]:
    """The shape (C, H, W) of the two-layer CNN's pool maps for one (1, height, width) input, measured."""
    model = _seeded(TwoLayerCNN)
    with torch.no_grad():
        return tuple(model.pool(model.conv2(model.conv1(torch.zeros(1, 1, height, width))))[0].shape)


def _pool_shape_slip(shape: tuple[int, ...], truth: tuple[int, ...], size: tuple[int, int]) -> str:
    """Why a predicted (C, H, W) is wrong for an input of `size`, or a pointer where no slip fits."""
    c, (h, w) = truth[0], size
    if len(shape) == 4 and shape[0] == 1 and shape[1:] == truth:
        return "it has the batch dimension: the question asks for the maps of the one input, (C, H, W)."
    if len(shape) != 3:
        return f"a map shape here has 3 numbers (C, H, W), not {len(shape)}."
    if shape == (truth[0], truth[2], truth[1]):
        return "the two sides are swapped: the height (rows) comes first, then the width."
    if shape == truth[1:] + truth[:1]:
        return "the channels come last: PyTorch keeps them first, (C, H, W)."
    if shape[0] != c:
        return ("8 is conv1's channel count: the pool keeps conv2's channels." if shape[0] == 8
                else "the pool keeps the channel count of the convolution before it.")
    sides = {(-(-(h - 4) // 2), -(-(w - 4) // 2)): "an odd side was rounded up: a 2x2 window that would hang over "
             "the edge is not computed, so the pool drops the last row or column.",
             (12, 12): "that is the shape for a 28 x 28 digit, printed in the lecture; this input has other sides.",
             (h // 2, w // 2): "neither 3x3 convolution is padded: each takes pixels off every side before the pool.",
             ((h - 2) // 2, (w - 2) // 2): "there are two convolutions before the pool, conv1 and conv2.",
             ((h - 6) // 2, (w - 6) // 2): "a 3x3 window without padding fits n - 2 times, not n - 3.",
             (h - 4, w - 4): "the 2x2 max-pool with stride 2 halves each side."}
    return sides.get(tuple(shape[1:]), "trace each side on its own: through two 3x3 convolutions, then a 2x2 pool.")


@question("odd_pool_shape", NOTEBOOK, answer_name="predicted_odd_shape", kind="predict", hints=(
    "Follow each side of your input on its own through TwoLayerCNN's layers: conv1, conv2 (both 3x3, no "
    "padding, stride 1), then the 2x2 max-pool with stride 2. The channels are those of the last convolution.",
    "An unpadded k x k convolution fits n - k + 1 windows along a side of n. The pool's windows do not "
    "overlap and it computes only windows that fit inside the map: what happens to an odd side?"),
    reveal="For an input H x W: (16, (H - 4) // 2, (W - 4) // 2): each unpadded 3x3 convolution takes 2 off a "
    "side, the pool halves it rounding down (an odd side loses its last row or column).")
def check_odd_pool_shape(predicted: Any) -> str:
    size = _pool_input_size()
    truth = _pool_shape(*size)
    if isinstance(predicted, str) or not isinstance(predicted, (tuple, list, torch.Size, np.ndarray)):
        raise Mistake(f"write the shape as a tuple of ints, e.g. (3, 5, 5), not a {type(predicted).__name__}.")
    values = list(np.asarray(predicted).reshape(-1)) if isinstance(predicted, np.ndarray) else list(predicted)
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise Mistake(f"the shape {tuple(predicted)!r} holds something other than ints: sizes are whole numbers.",
                      "write e.g. (3, 5, 5), with no decimal points.")
    shape = tuple(int(v) for v in values)
    if shape != truth:
        raise Mistake(f"you predicted {shape} for an input of {size[0]} x {size[1]}: "
                      f"{_pool_shape_slip(shape, truth, size)} The cell after this check measures it.",
                      "see hint('odd_pool_shape').")
    return (f"{truth} for an input of {size[0]} x {size[1]}: two 3x3 convolutions take 4 off each side, "
            "and the pool halves it, dropping the last row or column of an odd side.")


RF_SLIPS = {5: "that is the field of conv2's units: the pool's 2x2 window adds one more pixel.",
            7: "the pool adds k - 1 = 1 pixel, not its whole window of 2: neighbouring windows overlap in all "
               "but one pixel.",
            8: "you added the kernel sizes: each layer adds k - 1 pixels (times the product of the strides "
               "before it), and the unit itself is 1.",
            10: "the pool's stride was applied to the layers before it: a stride multiplies only what later "
                "layers add.",
            12: "you doubled the convolutions' field for the pool: a pool widens it by (k - 1) pixels, it does "
                "not scale it."}


@question("pool_receptive_field", NOTEBOOK, kind="concept", hints=(
    "The receptive field is the side of the input patch that one unit's value depends on. Start from one "
    "pixel of the pool's output and walk back to the input, one layer at a time.",
    "Each layer adds (k - 1) pixels, times the product of the strides of the layers BEFORE it (notebook 01). "
    "The pool comes last here, so its stride multiplies nothing."),
    reveal="r = 1 + (3 - 1) + (3 - 1) + (2 - 1) = 6 for conv 3x3, conv 3x3, max-pool 2x2 stride 2.")
def check_pool_receptive_field(value: Any) -> str:
    expected = receptive_field([3, 3, 2], [1, 1, 2])
    integer_tensor = isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point()
    count = int(value.item()) if integer_tensor else value
    if isinstance(count, (int, np.integer)) and not isinstance(count, bool) and int(count) != expected:
        why = RF_SLIPS.get(int(count), "walk back from one unit of the pool to the input, layer by layer.")
        raise Mistake(f"pool_receptive_field is {int(count)}, not the right count: {why}",
                      "see hint('pool_receptive_field').")
    expect_count(count, expected, "pool_receptive_field")
    return (f"{expected} x {expected} pixels: 1 + 2 (conv1) + 2 (conv2) + 1 (the pool), so each of the 12 x 12 "
            "pooled units sees a 6 x 6 patch of the digit.")


POSITIVE_FILTER_OPTIONS = {
    "a": "right: with every weight positive the response is a weighted local average of the pixels: high where "
         "the patch holds ink, whatever the stroke's direction; its map looks like a blurred digit.",
    "b": "an edge detector needs weights of both signs, so that a uniform patch cancels out; an all-positive "
         "filter responds most to a uniform bright patch, not to an edge.",
    "c": "positive weights make the response grow with the pixel values, so it is largest on the ink "
         "(bright, about +2.8 after normalisation) and lowest on the background (about -0.42), not the other way.",
    "d": "the input is normalised, (x - mean) / std, so the background is negative and the ink positive: "
         "the response follows the strokes, it is not the same everywhere."}


@question("positive_filter_choice", NOTEBOOK, kind="concept", hints=(
    "Write the response of one position: the sum over the 3 x 3 patch of weight * pixel, plus the bias.",
    "With all weights positive, which patch makes that sum largest: an edge (bright on one side, dark on "
    "the other), a uniform bright patch, or a dark one?"),
    reveal="(a): it is a weighted average of the patch: largest on a patch full of ink, of any orientation.")
def check_positive_filter_choice(answer: Any) -> str:
    return expect_choice(answer, POSITIVE_FILTER_OPTIONS, "a", "positive_filter_choice",
                         "run hint('positive_filter_choice').")


INK, BACKGROUND = (1 - MEAN) / STD, -MEAN / STD          # a white and a black pixel after normalisation


def _ink_reference(weight: torch.Tensor, bias: torch.Tensor) -> list[int]:
    """The channels whose response to a uniform patch of ink exceeds that to a uniform background patch."""
    on_ink, on_background = INK * weight.flatten(1).sum(1) + bias, BACKGROUND * weight.flatten(1).sum(1) + bias
    return [o for o in range(len(weight)) if on_ink[o] > on_background[o]]


def _ink_bank(k: int, g: torch.Generator, kinds: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A first layer (len(kinds), 1, k, k) and its bias, one filter of each kind, in a drawn order and scale.

    Kinds: 'p' all positive, 'n' all negative, 'a' ink-loving with a bias that keeps it negative on ink,
    'b' background-loving with a bias that keeps it positive on ink, 'c' ink-loving with a negative centre,
    'd' mostly positive weights but a negative sum, 'e' ink-loving whose largest |weight| is negative,
    'r' random weights and bias."""
    n, centre = k * k, (k // 2) * k + k // 2
    weights, biases = [], []
    for kind in kinds:
        w, b = torch.full((n,), 0.1, dtype=torch.float64), 0.0
        others = [i for i in range(n) if i != centre]
        spots = [others[int(i)] for i in torch.randperm(len(others), generator=g)[:2]] if others else []
        if kind in "nb":
            w = -w
        if kind == "c":
            w[:], w[centre] = 0.2, -0.3
        if kind == "d":
            w[spots] = -0.1 * n
        if kind == "e":
            w[spots[0]] = -0.05 * n
        if kind == "r":
            w, b = torch.randn(n, generator=g, dtype=torch.float64), torch.randn((), generator=g).item()
        if kind in "ab":
            b = -INK * w.sum().item() - (1.0 if kind == "a" else -1.0)
        scale = 0.5 + torch.rand((), generator=g, dtype=torch.float64).item()
        weights.append(scale * w)
        biases.append(scale * b)
    order = torch.randperm(len(kinds), generator=g)
    return (torch.stack(weights).view(-1, 1, k, k)[order].float(),
            torch.tensor(biases, dtype=torch.float64)[order].float())


INK_SLIPS = {  # what the slip computes from (weight, bias), what went wrong
    "bias": (lambda w, b: b > 0, "you picked the filters with a positive bias: the bias adds the same amount at "
             "every position, on ink and on background alike, so it cannot make a filter prefer either."),
    "positive on ink": (lambda w, b: INK * w.flatten(1).sum(1) + b > 0, "you picked the filters whose response "
                        "on ink is positive; the question is whether it is larger on ink than on the background, "
                        "and the bias is in both."),
    "reversed": (lambda w, b: w.flatten(1).sum(1) < 0, "these are the filters that respond more to the "
                 "background: after normalisation ink is the positive value and the background the negative one."),
    "centre": (lambda w, b: w[:, :, w.shape[2] // 2, w.shape[3] // 2].flatten(1).sum(1) > 0, "you looked at "
               "the centre weight only: a uniform patch of ink lies under every weight of the window."),
    "majority": (lambda w, b: (w.flatten(1) > 0).double().mean(1) > 0.5, "you counted the positive weights: a "
                 "few large negative weights can outweigh many small positive ones."),
    "largest": (lambda w, b: w.flatten(1).gather(1, w.flatten(1).abs().argmax(1, keepdim=True))[:, 0] > 0,
                "you took the sign of the largest weight: the smaller weights of the other sign add up too."),
    "all positive": (lambda w, b: (w.flatten(1) > 0).all(1), "you kept only the filters with every weight "
                     "positive: a filter of mixed signs can prefer ink as well."),
}


def _channel_list(got: Any, channels: int, what: str) -> list[int]:
    """A returned answer (indices as a list, set, tuple, array or tensor; or a bool mask) as sorted indices."""
    if isinstance(got, torch.Tensor):
        got = got.detach().cpu().numpy()
    if isinstance(got, (set, frozenset, tuple, list)):
        got = np.asarray(sorted(got) if isinstance(got, (set, frozenset)) else list(got))
    if not isinstance(got, np.ndarray):
        raise Mistake(f"{what} returned {type(got).__name__}; return the channel indices, e.g. [0, 3], or a "
                      "bool mask with one entry per channel.")
    got = got.reshape(-1)
    if got.dtype == bool:
        if len(got) != channels:
            raise Mistake(f"{what} returned a mask of {len(got)} entries for {channels} channels.")
        return [int(i) for i in np.flatnonzero(got)]
    if got.size and not np.issubdtype(got.dtype, np.integer):
        raise Mistake(f"{what} returned {got.dtype} values such as {got[0]:.3g}: return the channel indices "
                      "(ints) or a bool mask, not per-channel scores.", "compare the score with something.")
    if any(not 0 <= i < channels for i in got) or len(set(got.tolist())) != len(got):
        raise Mistake(f"{what} returned {got.tolist()}: channel indices run from 0 to {channels - 1}, each once.")
    return sorted(int(i) for i in got)


@question("ink_channels", NOTEBOOK, kind="implement", hints=(
    "Write the response of one filter at one position: the sum over its window of weight * pixel, plus the "
    "bias. Put a uniform patch under it, every pixel ink (about +2.8 after normalisation); then every pixel "
    "background (about -0.42).",
    "Subtract the two responses: what is left of the bias, and which single number of the filter decides "
    "the sign of the difference? Not one weight, not the count of positive ones."),
    reveal="weight.flatten(1).sum(1) > 0: the difference of the two responses is (ink - background) * sum of the "
    "filter's weights; the bias cancels. Return those channels' indices.")
def check_ink_channels(ink_channels: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    g = case_generator(22)
    layers = [_ink_bank(3, g, "abcdeprn"), _ink_bank(5, g, "pacdebnr"), _ink_bank(1, g, "abpn")]
    wanted = [_ink_reference(w.double(), b.double()) for w, b in layers]          # before the student's code runs
    slips = {name: [[o for o, yes in enumerate(f(w.double(), b.double())) if yes] for w, b in layers]
             for name, (f, _) in INK_SLIPS.items()}
    answers = []
    for (weight, bias), want in zip(layers, wanted):
        what = f"ink_channels(weight {tuple(weight.shape)}, bias {tuple(bias.shape)})"
        passed = torch.nn.Parameter(weight.clone()), torch.nn.Parameter(bias.clone())  # as model.conv1's are
        with calling(what):
            answers.append(_channel_list(ink_channels(*passed), len(weight), what))
    if answers == wanted:
        return ("right on layers of 3x3, 5x5 and 1x1 filters (as model.conv1's parameters): a filter prefers ink "
                "exactly when its weights sum to more than 0, whatever its bias, centre or largest weight.")
    for name, (_, why) in INK_SLIPS.items():
        if answers == slips[name]:
            raise Mistake(f"ink_channels: {why}", "see hint('ink_channels').")
    (weight, bias), got, want = next(c for c in zip(layers, answers, wanted) if c[1] != c[2])
    o = min(set(got) ^ set(want))
    said = "returned" if o in got else "left out"
    raise Mistake(f"for a layer of {tuple(weight.shape)} filters you {said} channel {o} (weights "
                  f"{weight[o].flatten()[:4].tolist()}..., bias {bias[o].item():.3g}): put a uniform patch of ink "
                  "and one of background under it and compare its two responses.", "see hint('ink_channels').")


def conv_input_grad_reference(grad_output: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """dL/dx for L = sum(grad_output * conv2d(x, kernel)), valid and stride 1, by autograd in float64."""
    (out_h, out_w), (kh, kw) = grad_output.shape, kernel.shape
    x = torch.zeros(out_h + kh - 1, out_w + kw - 1, dtype=torch.float64, requires_grad=True)
    response = F.conv2d(x[None, None], kernel.double()[None, None])[0, 0]
    return torch.autograd.grad((response * grad_output.double()).sum(), x)[0]


def _rel_close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a and b agree to a relative error below 1e-7 (the gradient check's threshold)."""
    return a.shape == b.shape and rel_error(a, b) < 1e-7


GRAD_SLIPS = [  # (what the slip computes from (grad_output, kernel), what went wrong, hint)
    (lambda g, w: conv_input_grad_reference(g, w.flip(0, 1)), "the kernel is turned 180 degrees from what the "
     "gradient needs.", "put a single 1 in grad_output and compare where the kernel lands in your result with "
     "where it sat in the forward pass; see hint('conv_input_grad')."),
    (lambda g, w: conv_input_grad_reference(torch.ones_like(g), w), "it ignores grad_output: that is the gradient "
     "of the sum of all responses (grad_output all ones), not of sum(grad_output * response).",
     "weight each position's contribution by grad_output[i, j]."),
]
_AUTOGRAD = {torch.autograd.grad: "torch.autograd.grad", torch.Tensor.backward: "Tensor.backward",
             torch.conv_transpose2d: "conv_transpose2d", F.conv_transpose2d: "conv_transpose2d"}


@question("conv_input_grad", NOTEBOOK, points=2, kind="backward", hints=(
    "Take one input pixel x[p, q]: which responses r[i, j] have it inside their window, and with which kernel "
    "weight? Its gradient adds up grad_output over those positions, each times that weight.",
    "It is easier from the outputs' side: r[i, j] used the patch of x at rows i..i + kh - 1, columns "
    "j..j + kw - 1, so its upstream gradient flows back into that patch, weighted by the kernel. The result has the "
    "input's shape (H_out + kh - 1, W_out + kw - 1) and stays float64."),
    reveal="Loops: grad_x = zeros; for every (i, j): grad_x[i:i + kh, j:j + kw] += grad_output[i, j] * kernel. "
    "Vectorised: F.conv2d(F.pad(g, (kw - 1, kw - 1, kh - 1, kh - 1)), kernel.flip(0, 1)) on (1, 1, ...) views.")
def check_conv_input_grad(conv_input_grad: Callable[[torch.Tensor, torch.Tensor], Any]) -> str:
    g = case_generator(10)
    cases = [(torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(3, 3, generator=g, dtype=torch.float64)),
             (torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)),
             (torch.randn(5, 5, generator=g, dtype=torch.float64), torch.randn(5, 5, generator=g, dtype=torch.float64)),
             (torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(1, 1, generator=g, dtype=torch.float64))]
    r = case_random(15)                                    # a case of sizes drawn for the student
    cases.append((torch.randn(r.randrange(1, 8), r.randrange(1, 8), generator=g, dtype=torch.float64),
                  torch.randn(r.randrange(1, 6), r.randrange(1, 6), generator=g, dtype=torch.float64)))
    wanted = [conv_input_grad_reference(g_out, w) for g_out, w in cases]          # before the student's code runs
    slipped = [[f(g_out, w) for f, _, _ in GRAD_SLIPS] for g_out, w in cases]
    answers, worst = [], 0.0
    for (g_out, w), want in zip(cases, wanted):
        with Watch(_AUTOGRAD) as watch, calling("conv_input_grad", g_out, w):
            got = conv_input_grad(g_out.clone(), w.clone())
        forbid(watch.used, "conv_input_grad", "compute the gradient by hand; see hint('conv_input_grad').")
        if getattr(got, "dtype", None) in (torch.float32, torch.float16, torch.bfloat16, np.float32):
            raise Mistake(f"conv_input_grad returned {got.dtype} for float64 inputs: float32 rounding alone gives a "
                          "relative error near 1e-7.", "keep the inputs' dtype: torch.zeros(..., dtype=kernel.dtype).")
        t = as_tensor(got, "conv_input_grad's result")
        t = t.reshape(t.shape[-2:]) if t.dim() > 2 and all(n == 1 for n in t.shape[:-2]) else t
        if tuple(t.shape) == tuple(g_out.shape) != tuple(want.shape):
            raise Mistake(f"conv_input_grad has the shape of grad_output, {tuple(g_out.shape)}: the gradient with "
                          f"respect to the input has the input's shape, {tuple(want.shape)}.",
                          "the input is kh - 1 rows and kw - 1 columns larger than the output.")
        answers.append(t)
    for (g_out, w), want, slips, t in zip(cases, wanted, slipped, answers):
        slip = next(((m, h) for (_, m, h), wrong in zip(GRAD_SLIPS, slips) if _rel_close(t, wrong)), None)
        if slip and not _rel_close(t, want):
            raise Mistake(f"for a {tuple(w.shape)} kernel, {slip[0]}", slip[1])
        worst = max(worst, grad_check(t, want, f"conv_input_grad for a {tuple(w.shape)} kernel and grad_output "
                                      f"{tuple(g_out.shape)}", "see hint('conv_input_grad')."))
    return (f"matches autograd in float64 for 3x3, 2x3, 5x5, 1x1 and "
            f"{tuple(cases[-1][1].shape)} kernels: relative error {worst:.1e} (below 1e-7), "
            "without autograd or conv_transpose2d.")


written_question("first_layer_filters", NOTEBOOK, hints=(
    "Look at the grid of conv1's filters of the trained model: where are the red and the blue weights of "
    "each filter, and do they cancel out over the filter?",
    "Think about what the first layer receives: raw pixels of strokes. Which local patterns tell digits "
    "apart at the scale of 3 x 3 pixels?"),
    reveal="Read the lecture's printed net sign Σw / Σ|w| of each conv1 filter: the ones near 0 balance positive and"
    " negative weights (a red band beside a blue band) and react to where and in which direction a stroke's edge"
    " runs; the clearly positive ones respond to ink itself, a negative one to the background. At 3 x 3 pixels"
    " the local information that tells digits apart is where the ink is and how its edges run; the ReLU after"
    " the layer keeps one sign of each, and later layers combine these maps into strokes and shapes.")
