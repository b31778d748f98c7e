"""Questions of notebook 06 (ResNet upgrade): the residual block and its shortcut, squeeze-and-excitation,
a block's parameters and output shape, a block whose last BatchNorm scale is zero, a 1x1 convolution by hand,
what global average pooling saves, a data loader with augmentation, a buggy block, BatchNorm's backward.

The predict and numeric questions draw their sizes per student: `sheet_cases(student_id)` gives a sheet the
sizes its checks will use."""
from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cost import count_parameters
from ..resnets import ResidualBlock, SEBlock
from . import Mistake, question, set_student, student, written_question
from .tools import (Watch, as_tensor, calling, case_generator, case_random, expect_close, expect_count, expect_shape,
                    forbid, grad_check, is_integer, variant_seed)

NOTEBOOK = "06_resnet_upgrade"
BLOCK_CASES = [(8, 8, 1), (8, 16, 1), (8, 8, 2), (8, 16, 2)]     # (channels equal/different) x (stride 1/2)
SIDE = 10                                                         # the check's input is (4, C_in, 10, 10)


def _build(cls, *args) -> nn.Module:
    """Instantiate the student's class, checking it is a module."""
    module = cls(*args)
    if not isinstance(module, nn.Module):
        raise Mistake(f"{cls.__name__}{args} is a {type(module).__name__}, not an nn.Module.",
                      "subclass nn.Module and call super().__init__() first.")
    return module


def _case(c_in: int, c_out: int, stride: int) -> str:
    """The combination a block's arguments stand for, in words."""
    return f"{'equal' if c_in == c_out else 'different'} channels and stride {stride}"


def _layers(module: nn.Module, kind: str) -> list[nn.Module]:
    """The module's leaf layers of one kind ('Conv2d', 'BatchNorm2d'), in the order they were defined."""
    return [m for _, m in module.named_modules() if type(m).__name__ == kind]


def _randomised_reference(c_in: int, c_out: int, stride: int, seed: int) -> ResidualBlock:
    """The course's block with random convolutions and random BatchNorm scales (around 1) and shifts."""
    g = case_generator(seed)
    ours = ResidualBlock(c_in, c_out, stride)
    with torch.no_grad():
        for conv in _layers(ours, "Conv2d"):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
        for bn in _layers(ours, "BatchNorm2d"):
            bn.weight.copy_(1 + 0.5 * torch.randn(bn.weight.shape, generator=g))
            bn.bias.copy_(0.5 * torch.randn(bn.bias.shape, generator=g))
    return ours


def _shortcut_structure(theirs: nn.Module, c_in: int, c_out: int, stride: int, what: str) -> None:
    """Whether the student's block has a projection exactly where the shape changes, with the stride."""
    projections = [m for m in _layers(theirs, "Conv2d") if m.weight.shape[-2:] == (1, 1)]
    needed = stride != 1 or c_in != c_out
    more = "hint('residual_block') says more."
    if needed and not projections and c_in == c_out:
        raise Mistake(f"{what}: equal channels and stride {stride}: the shortcut must also downsample. F(x) is "
                      f"{-(-SIDE // stride)}x{-(-SIDE // stride)} on a {SIDE}x{SIDE} input, but your shortcut "
                      f"keeps x at {SIDE}x{SIDE}: a projection is needed whenever the shape changes, and the "
                      "stride changes it even when the channels stay.", more)
    if needed and not projections:
        raise Mistake(f"{what}: different channels: the shortcut must project x to {c_out} channels, "
                      f"but your block has no 1x1 convolution for {_case(c_in, c_out, stride)}.", more)
    if not needed and projections:
        raise Mistake(f"{what}: equal channels and stride 1: the shortcut should be the identity, but your "
                      "block projects x with a 1x1 convolution (extra parameters for nothing).", more)
    if projections and tuple(projections[0].stride) != (stride, stride):
        raise Mistake(f"{what}: {_case(c_in, c_out, stride)}: your 1x1 projection has stride "
                      f"{tuple(projections[0].stride)[0]}, so s(x) and F(x) differ in size.",
                      "the projection must shrink x as much as the branch does.")


def _copy_into(theirs: nn.Module, ours: ResidualBlock, what: str) -> None:
    """Give the student's layers our weights: 3x3 convs in order, the 1x1 conv, the i-th BatchNorm to the i-th conv.

    A bias on a convolution is set to 0 (the BatchNorm after it cancels it), so it is accepted.
    """
    convs, bns = _layers(theirs, "Conv2d"), _layers(theirs, "BatchNorm2d")
    ours_convs = [ours.conv1, ours.conv2] + ([ours.shortcut[0]] if len(ours.shortcut._modules) else [])
    ours_bns = [ours.bn1, ours.bn2] + ([ours.shortcut[1]] if len(ours.shortcut._modules) else [])
    threes = [m for m in convs if m.weight.shape[-2:] == (3, 3)]
    ones = [m for m in convs if m.weight.shape[-2:] == (1, 1)]
    want = [tuple(c.weight.shape) for c in ours_convs]
    got = [tuple(c.weight.shape) for c in threes + ones]
    if got != want or len(convs) != len(want):
        raise Mistake(f"{what} has convolution weights of shapes {[tuple(c.weight.shape) for c in convs]}, "
                      f"expected {want}.", "two 3x3 convolutions in the branch (the first takes the stride), "
                      "and a 1x1 convolution only in the projection shortcut.")
    if len(bns) != len(ours_bns):
        missing = "the 1x1 projection has no BatchNorm after it (the report's block has none; this one does)" \
            if len(bns) == len(ours_bns) - 1 and ones else f"{len(bns)} BatchNorm2d layers, expected {len(ours_bns)}"
        raise Mistake(f"{what}: {missing}.", "each convolution is followed by a BatchNorm.")
    paired = {id(conv): bn for conv, bn in zip(convs, bns)}     # the i-th defined BatchNorm to the i-th conv
    own = sum(p.numel() for m in convs + bns for p in m.parameters(recurse=False))
    if own != sum(p.numel() for p in theirs.parameters()):
        raise Mistake(f"{what} has parameters outside its Conv2d and BatchNorm2d layers.",
                      "the block is two convolutions, their BatchNorms and the shortcut; nothing else learns.")
    with torch.no_grad():
        for conv, ref_conv, ref_bn in zip(threes + ones, ours_convs, ours_bns):
            conv.weight.copy_(ref_conv.weight)
            if conv.bias is not None:
                conv.bias.zero_()
            bn = paired[id(conv)]
            if bn.weight is None or tuple(bn.weight.shape) != tuple(ref_bn.weight.shape):
                raise Mistake(f"{what}: a BatchNorm2d without learned scale and shift, or of the wrong size.",
                              "nn.BatchNorm2d(out_channels) with its defaults.")
            bn.weight.copy_(ref_bn.weight), bn.bias.copy_(ref_bn.bias)


def _block_variants(ours: ResidualBlock, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a block would output in training mode with each classic mistake ('right' is the reference)."""
    ref = copy.deepcopy(ours).train()
    with torch.no_grad():
        h = torch.relu(ref.bn1(ref.conv1(x)))
        c2, s = ref.conv2(h), ref.shortcut(x)
        f = ref.bn2(c2)
        variants = {"right": torch.relu(f + s), "no final ReLU": f + s, "ReLU before the addition": torch.relu(f) + s,
                    "no shortcut": torch.relu(f), "shortcut added before bn2": torch.relu(ref.bn2(c2 + s)),
                    "ReLU and bn2 after adding the shortcut": ref.bn2(torch.relu(c2 + s)),
                    "no ReLU inside the branch": torch.relu(ref.bn2(ref.conv2(ref.bn1(ref.conv1(x)))) + s)}
        if ref.conv1.stride[0] != 1:
            h1 = torch.relu(ref.bn1(F.conv2d(x, ref.conv1.weight, padding=1)))
            f1 = ref.bn2(F.conv2d(h1, ref.conv2.weight, stride=ref.conv1.stride, padding=1))
            variants["stride on the second convolution"] = torch.relu(f1 + s)
    return variants


VARIANT_MESSAGES = {
    "no final ReLU": "it equals F(x) + s(x) without the ReLU that ends the block: the output has negative values",
    "ReLU before the addition": "the ReLU is applied to F(x) before the shortcut is added, not to the sum",
    "no shortcut": "the shortcut is never added: the output is the branch alone",
    "shortcut added before bn2": "the shortcut is added before bn2, so bn2 normalises it away with the branch",
    "ReLU and bn2 after adding the shortcut": "the shortcut is added before bn2 and the ReLU comes before bn2: "
                                              "the block's last operation should be the ReLU",
    "no ReLU inside the branch": "the branch has no ReLU between its two convolutions",
    "stride on the second convolution": "the stride is on the second convolution instead of the first",
}


def _diagnose(out: torch.Tensor, variants: dict[str, torch.Tensor], what: str, hint: str) -> None:
    """Name the classic mistake the output matches, or say it matches none."""
    for name, value in variants.items():
        if name != "right" and value.shape == out.shape and torch.allclose(out, value.double(), atol=1e-4, rtol=1e-4):
            raise Mistake(f"the output of {what}: {VARIANT_MESSAGES[name]}.", hint)
    if (out < 0).any():
        raise Mistake(f"the output of {what} has negative values: the block ends with a ReLU.", hint)
    expect_close(out, variants["right"].double(), f"the output of {what} in training mode", hint, atol=1e-4)


def _grade_block(StudentBlock, question_id: str, what_name: str) -> None:
    """Compare the student's block with the reference for every combination of channels and stride."""
    more = f"hint({question_id!r}) says more."
    g = case_generator(6)
    for c_in, c_out, stride in BLOCK_CASES:                             # structure first: every combination
        what = f"{what_name}({c_in}, {c_out}, {stride})"
        _shortcut_structure(_build(StudentBlock, c_in, c_out, stride), c_in, c_out, stride, what)
    for seed, (c_in, c_out, stride) in enumerate(BLOCK_CASES):
        what = f"{what_name}({c_in}, {c_out}, {stride}) ({_case(c_in, c_out, stride)})"
        ours = _randomised_reference(c_in, c_out, stride, seed)
        x = torch.randn(4, c_in, SIDE, SIDE, generator=g)
        variants = _block_variants(ours, x)
        with torch.no_grad():
            want_train, want_eval = ours.train()(x).detach(), ours.eval()(x).detach()
        torch.manual_seed(0)
        theirs = _build(StudentBlock, c_in, c_out, stride)
        _copy_into(theirs, ours, what)
        for mode, want in (("train", want_train), ("eval", want_eval)):
            theirs.train(mode == "train")
            with calling(f"{what}, forward on x of shape {tuple(x.shape)} in {mode} mode"):
                out = theirs(x.clone())
            if out is None:
                raise Mistake(f"{what}: forward returned None: it computes the output but never returns it.", more)
            expect_shape(out, tuple(want.shape), f"the output of {what}",
                         f"only the first convolution and the projection take the stride; {more}")
            if mode == "train" and not torch.allclose(as_tensor(out, "the output"), want.double(), atol=1e-4,
                                                      rtol=1e-4):
                _diagnose(as_tensor(out, "the output"), variants, what, more)
            expect_close(out, want, f"the output of {what} in {mode} mode",
                         "right in training mode, different in evaluation mode: use nn.BatchNorm2d's running "
                         "statistics (its defaults), not the batch's, in eval mode." if mode == "eval" else more,
                         atol=1e-4)


@question("residual_block", NOTEBOOK, answer_name="ResidualBlock", points=2, hints=(
    "Look at the shapes: F(x) changes shape when the channels change and when the stride is 2. The shortcut "
    "must produce exactly F(x)'s shape, or the addition fails.",
    "Go through the four combinations the check tries (equal or different channels, stride 1 or 2) and compare "
    "the shape of x with the shape of F(x) in each: wherever they differ, the shortcut must change x the way the "
    "branch does, in channels and in size. Then check which convolution of the branch the exercise gives the "
    "stride to."),
    reveal="y = relu(bn2(conv2(relu(bn1(conv1(x))))) + s(x)), conv1 3x3 stride `stride` padding 1, conv2 3x3 stride 1 "
    "padding 1, s = nn.Identity() if stride == 1 and in == out else nn.Sequential(nn.Conv2d(in, out, 1, "
    "stride=stride, bias=False), nn.BatchNorm2d(out)).")
def check_residual_block(StudentBlock) -> str:
    _grade_block(StudentBlock, "residual_block", "ResidualBlock")
    return ("all four combinations (equal or different channels, stride 1 or 2) have the right shortcut and "
            "give the reference output in training and evaluation mode.")


def _copy_se(theirs: nn.Module, ours: SEBlock, what: str) -> None:
    """Copy our fc1, fc2 into the student's two layers, in order; a 1x1 convolution takes the reshaped weight."""
    got, want = list(theirs.parameters()), list(ours.parameters())
    if [p.numel() for p in got] != [p.numel() for p in want]:
        raise Mistake(f"{what} has parameters of shapes {[tuple(p.shape) for p in got]}, expected "
                      f"{[tuple(p.shape) for p in want]} (or the 1x1 convolution equivalents).",
                      "two layers with biases: C -> C // reduction, then C // reduction -> C, defined in that order.")
    with torch.no_grad():
        for p, q in zip(got, want):
            p.copy_(q.reshape(p.shape))


def _se_variants(ours: SEBlock, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What an SE block would output with each classic mistake."""
    with torch.no_grad():
        excite = lambda z, act=torch.relu: ours.fc2(act(ours.fc1(z)))
        mean = x.mean(dim=(2, 3))
        return {"max": x * torch.sigmoid(excite(x.amax(dim=(2, 3))))[:, :, None, None],
                "sum": x * torch.sigmoid(excite(x.sum(dim=(2, 3))))[:, :, None, None],
                "no relu": x * torch.sigmoid(excite(mean, lambda t: t))[:, :, None, None],
                "softmax": x * torch.softmax(excite(mean), dim=1)[:, :, None, None],
                "gates only": torch.sigmoid(excite(mean))[:, :, None, None].expand_as(x)}


SE_MESSAGES = {"max": "it squeezes each channel with its maximum; the squeeze is the channel's average",
               "sum": "it squeezes each channel with its sum over the pixels; the squeeze is the average",
               "no relu": "there is no ReLU between the two layers of the excitation",
               "softmax": "the gates come from a softmax over the channels, so they compete; each gate is "
                          "its own number in (0, 1)",
               "gates only": "it returns the gates themselves, not the input rescaled by them"}


@question("se_block", NOTEBOOK, answer_name="SEBlock", points=2, hints=(
    "Three steps: one number per (image, channel) from the whole map, a small bottleneck on those numbers, "
    "then a rescaling of the input. Which step does the check's message point to?",
    "The squeeze is an average (not a max or a sum), the bottleneck has a ReLU in the middle, and the gates "
    "are squashed into (0, 1) independently, then multiplied into x (broadcast over H and W)."),
    reveal="z = x.mean(dim=(2, 3)); g = torch.sigmoid(fc2(torch.relu(fc1(z)))); return x * g[:, :, None, None] "
    "(with 1x1 convolutions: keepdim=True and no indexing).")
def check_se_block(StudentSE) -> str:
    more = "hint('se_block') says more."
    g = case_generator(7)
    for channels, reduction in [(16, 4), (32, 8)]:
        torch.manual_seed(0)
        ours = SEBlock(channels, reduction)
        x = torch.rand(3, channels, 5, 5, generator=g) + 0.5    # positive, so out / x is safe
        want, variants = ours(x).detach(), _se_variants(ours, x)
        theirs = _build(StudentSE, channels, reduction)
        what = f"SEBlock({channels}, {reduction})"
        _copy_se(theirs, ours, what)
        out = theirs(x.clone())
        if out is None:
            raise Mistake(f"{what}: forward returned None: it computes but never returns.", more)
        t = expect_shape(out, tuple(want.shape), f"the output of {what}",
                         "the block rescales x: its output has the shape of its input.")
        if torch.allclose(t, want.double(), atol=1e-5):
            continue
        for name, value in variants.items():
            if torch.allclose(t, value.double(), atol=1e-5):
                raise Mistake(f"{what}: {SE_MESSAGES[name]}.", more)
        gates = t / x
        if not torch.allclose(gates, gates[:, :, :1, :1].expand_as(gates), atol=1e-4):
            added = t - x
            if torch.allclose(added, added[:, :, :1, :1].expand_as(added), atol=1e-4):
                raise Mistake(f"{what}: the gates are added to x; they rescale it.", more)
            raise Mistake(f"{what}: output / input is not constant over each channel's pixels: one gate per "
                          "(image, channel) rescales the whole map.", more)
        if not ((gates > 0) & (gates < 1)).all():
            raise Mistake(f"{what}: the gates output / input leave the interval (0, 1): they are not squashed.", more)
        expect_close(out, want, f"the output of {what}", more, atol=1e-5)
    return "squeeze (mean), excite (bottleneck with ReLU, sigmoid gates) and per-channel scaling match the reference."


PREDICT_BLOCK = (12, 24, 2)                      # block_parameters without an id: not a block the lecture counts
LECTURE_BLOCK = (16, 32)                         # the lecture prints this block's count and output shape


def block_case() -> tuple[int, int, int]:
    """block_parameters' block (C_in, C_out, stride 2) for the current student; PREDICT_BLOCK without an id."""
    if not student():
        return PREDICT_BLOCK
    pairs = [(c, k * c) for c in (8, 12, 16, 20, 24) for k in (2, 3) if (c, k * c) != LECTURE_BLOCK]
    return (*case_random(61).choice(pairs), 2)


def block_slips(c_in: int, c_out: int) -> dict[int, str]:
    """block_parameters' named miscounts of ResidualBlock(c_in, c_out, 2): wrong count -> what was miscounted."""
    truth = count_parameters(ResidualBlock(c_in, c_out, 2))
    projection, bn_affine = c_in * c_out, 3 * 2 * c_out               # 1x1 weights; gamma and beta of 3 BatchNorms
    return {truth - projection - bn_affine // 3: f"you left out the shortcut: {c_in} -> {c_out} channels with "
                                                 "stride 2 needs the projection (a 1x1 convolution and its BatchNorm)",
            truth - projection: "you left out the projection's 1x1 convolution",
            truth - bn_affine: "you left out the BatchNorms' learned scale and shift",
            truth + bn_affine: "you counted the BatchNorms' running mean and variance: they are buffers, "
                               "not parameters",
            truth + 3 * c_out: "you counted a bias for each convolution; these have none (a BatchNorm follows)",
            truth + 2 * c_out: "you counted a bias for the two 3x3 convolutions; they have none (a BatchNorm follows)",
            truth + 8 * projection: "you counted the projection as a 3x3 convolution; it is 1x1"}


@question("block_parameters", NOTEBOOK, answer_name="predicted_block_parameters", kind="predict", hints=(
    "Count layer by layer: two 3x3 convolutions, their BatchNorms, and the shortcut this block needs.",
    "Three things are easy to get wrong: whether this block's shortcut has layers of its own (compare the shapes "
    "of x and F(x)), what a convolution's weight tensor holds besides the channels (its kernel), and which of a "
    "BatchNorm's tensors are learned and which are only tracked (parameters against buffers)."),
    reveal="9 C_in C_out + 9 C_out^2 + C_in C_out + 3 * 2 C_out: conv1, conv2, the 1x1 projection, and a scale and "
    "a shift for each of the three BatchNorms. For ResidualBlock(12, 24, 2): 2,592 + 5,184 + 288 + 144 = 8,208.")
def check_block_parameters(predicted) -> str:
    c_in, c_out, stride = block_case()
    truth = count_parameters(ResidualBlock(c_in, c_out, stride))
    what = f"predicted_block_parameters (ResidualBlock({c_in}, {c_out}, stride={stride}))"
    try:
        expect_count(predicted, truth, what)
    except Mistake as m:
        reason = block_slips(c_in, c_out).get(int(predicted)) if is_integer(predicted) else None
        if reason:
            raise Mistake(f"{what} is {int(predicted):,}: {reason}. Run the cell below to see each layer's count.",
                          "hint('block_parameters') says more.") from None
        if not is_integer(predicted):
            raise m from None
        raise Mistake(f"{what} is {int(predicted):,}: not the block's count, and not one of the usual slips; count "
                      "each layer's weights again, then run the cell below.",
                      "hint('block_parameters') says more.") from None
    return (f"{truth:,} parameters, the 3x3 weights dominating and the projection adding "
            f"{c_in * c_out + 2 * c_out:,}.")


def stride2_case() -> tuple[int, int, tuple[int, int, int, int]]:
    """stride2_shape's block (C_in, C_out) and input (N, C_in, H, W) for the current student: H odd, W even, and
    W != H + 1 so that the output is not square; (12, 24) on (6, 12, 11, 16) without an id."""
    if not student():
        return 12, 24, (6, 12, 11, 16)
    r = case_random(66)
    c_in = r.choice([8, 12, 16, 24])
    h = r.choice(range(9, 22, 2))
    w = r.choice([v for v in range(8, 23, 2) if v != h + 1])
    return c_in, c_in * r.choice([2, 3]), (r.randint(2, 9), c_in, h, w)


def stride2_slips(c_in: int, c_out: int, shape: tuple[int, int, int, int]) -> dict[tuple[int, ...], str]:
    """stride2_shape's named wrong shapes for ResidualBlock(c_in, c_out, 2) on `shape`: wrong shape -> why."""
    n, _, h, w = shape
    oh, ow = (h + 1) // 2, w // 2                               # conv1: 3x3, padding 1, stride 2
    slips = {(n, c_out, h // 2, w // 2): f"the odd side ({h}) was halved and rounded down: conv1 pads by 1, so "
                                         "count where its stride-2 windows start on that side",
             (n, c_out, h // 2, w // 2 - 1): "conv1 is taken without padding: it pads by 1 on every side",
             (n, c_out, h, w): "the stride is ignored: stride 2 shrinks the map",
             (n, c_in, oh, ow): "the channels are the input's: the block outputs out_channels",
             (c_out, oh, ow): f"the batch dimension is missing: the block keeps N = {n}",
             (n, c_out, ow, oh): "height and width are swapped: the input's H comes before its W"}
    return {k: v for k, v in slips.items() if k != (n, c_out, oh, ow)}


@question("stride2_shape", NOTEBOOK, answer_name="predicted_output_shape", kind="predict", hints=(
    "Follow one image through conv1: its channels, its stride, its padding. The rest of the block keeps "
    "that shape, and the shortcut is built to match it.",
    "A convolution's output size depends on its kernel, padding and stride, and it is rounded: work it out for "
    "the height and for the width separately (one of them is odd). If unsure, list on paper the rows where the "
    "stride-2 windows start on a padded input of a few rows."),
    reveal="conv1 sets the size: floor((side + 2*1 - 3) / 2) + 1 on each side, so an odd side rounds up and an "
    "even side halves. For ResidualBlock(12, 24, stride=2) on (6, 12, 11, 16): floor(10 / 2) + 1 = 6 rows, "
    "floor(15 / 2) + 1 = 8 columns, so (6, 24, 6, 8).")
def check_stride2_shape(predicted) -> str:
    c_in, c_out, shape = stride2_case()
    with torch.no_grad():
        truth = tuple(ResidualBlock(c_in, c_out, 2).eval()(torch.zeros(shape)).shape)
    what = f"predicted_output_shape (ResidualBlock({c_in}, {c_out}, stride=2) on a {shape} batch)"
    if not isinstance(predicted, (tuple, list, torch.Size)):
        raise Mistake(f"{what} is a {type(predicted).__name__}; write the shape as a tuple such as (8, 1, 2, 3).")
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in predicted):
        raise Mistake(f"{what} is {tuple(predicted)!r:.80}: a shape holds whole numbers (int).",
                      "a convolution's output size is rounded: hint('stride2_shape').")
    got = tuple(int(d) for d in predicted)
    if got != truth:
        larger = len(got) == 4 and (got[2] > shape[2] or got[3] > shape[3])
        reason = stride2_slips(c_in, c_out, shape).get(got) or (
            "a stride-2 convolution never makes the map larger" if larger else
            "count the output rows and columns of conv1 again")
        raise Mistake(f"{what} is {got}: {reason}. Run the cell below to see the measured shape.",
                      "hint('stride2_shape') says more.")
    return f"{truth}: out_channels, and with padding 1 and stride 2 an odd side rounds up, an even side halves."


def zero_gamma_input() -> torch.Tensor:
    """zero_gamma's input for the current student: (4, 8, 6, 6), standard normal shifted by a drawn offset."""
    shift = case_random(62).choice([-0.7, -0.5, -0.3, 0.3, 0.5, 0.7])
    return torch.randn(4, 8, 6, 6, generator=case_generator(62)) + shift


def zero_gamma_blocks() -> tuple[ResidualBlock, Callable[[torch.Tensor], torch.Tensor]]:
    """A ResidualBlock(8, 8) with bn2's scale set to 0, and the plain block made of its branch (no shortcut)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        block = ResidualBlock(8, 8)
    nn.init.zeros_(block.bn2.weight)
    return block, lambda x: torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))))


def _fractions(value: Any, what: str, more: str) -> tuple[float, float]:
    """A predicted pair of fractions as two floats, or a Mistake saying what form it should take."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != 2:
        raise Mistake(f"{what} is {value!r:.60}: write two numbers, (residual, plain), e.g. (0.1, 0.2).", more)
    try:
        pair = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise Mistake(f"{what} is {value!r:.60}: both entries should be numbers.", more) from None
    if any(not 0 <= v <= 1 for v in pair):
        scale = " (percentages? write 0.25 for 25 %)" if all(0 <= v <= 100 for v in pair) else ""
        raise Mistake(f"{what} is {pair}: a fraction of entries lies between 0 and 1{scale}.", more)
    return pair


@question("zero_gamma", NOTEBOOK, answer_name="predicted_zero_fractions", kind="predict", hints=(
    "Start at bn2: with its scale gamma = 0 and its shift beta = 0, what does it output, whatever comes in? Then "
    "write out the last line of each block with that value in place of F(x).",
    "Compare what reaches the final ReLU in each block once bn2's output is known: one block still has a path "
    "from x to that ReLU, the other does not. Then ask where a ReLU's output is exactly 0, and look again at "
    "what the cell above printed about x."),
    reveal="(fraction of x that is <= 0, 1.0): F(x) = bn2(...) = 0 * x_hat + 0 = 0, so the residual block outputs "
    "relu(x + 0) = relu(x), zero where x <= 0, and the plain block relu(0) = 0 everywhere.")
def check_zero_gamma(predicted) -> str:
    more = "hint('zero_gamma') says more."
    what = "predicted_zero_fractions (residual, plain)"
    x = zero_gamma_input()
    block, plain = zero_gamma_blocks()
    with torch.no_grad():
        truth = tuple(float((f(x) == 0).double().mean()) for f in (block, plain))
    pair = _fractions(predicted, what, more)
    close = lambda a, b: abs(a - b) <= 0.02
    measured = "Run the cell below to see the measured fractions."
    if close(pair[0], truth[0]) and close(pair[1], truth[1]):
        return (f"({truth[0]:.2f}, {truth[1]:.2f}): the residual block passes x through its final ReLU unchanged "
                "where x > 0; the plain block outputs zeros (and passes no gradient back).")
    if close(pair[0], truth[1]) and close(pair[1], truth[0]):
        raise Mistake(f"{what} is {pair}: the two are swapped; the residual block comes first. {measured}", more)
    residual = {0.0: "the ReLU after the addition still acts on x + 0 = x, and x is not positive everywhere",
                1.0: "the shortcut still carries x past the silenced branch, so the residual block's output is "
                     "not all zeros",
                0.5: "half would be right for x centred at 0, but this x is shifted: look at its mean and "
                     "its share of negative entries printed above"}
    plain_ = {0.0: "the plain block has no shortcut: with gamma = 0, nothing of x reaches its final ReLU",
              0.5: "the plain block has no shortcut, so its final ReLU sees the same value at every entry, not x"}
    for got, want, named in ((pair[0], truth[0], residual), (pair[1], truth[1], plain_)):
        if not close(got, want):
            reason = next((why for value, why in named.items() if close(got, value)),
                          "follow x through the block with bn2's output set to 0")
            raise Mistake(f"{what} is {pair}: {reason}. {measured}", more)
    raise Mistake(f"{what} is {pair}. {measured}", more)              # unreachable: one of the two differs


def conv1x1_cases() -> list[tuple[int, int, int, int, int]]:
    """conv1x1's cases (N, C_in, C_out, H, W): equal channels with W == C_out first (a transposed weight or a bias
    added along the width shows), then one channel in, one out, a 1x1 map, and two drawn for the student."""
    r = case_random(63)
    drawn = [(r.randint(1, 4), r.randint(2, 6), r.randint(2, 6), r.randint(2, 6), r.randint(2, 6)) for _ in range(2)]
    return [(2, 3, 3, 4, 3), (1, 1, 1, 1, 1), (2, 1, 4, 3, 5), (3, 5, 1, 1, 1), *drawn]


CONV_FORBIDDEN = {F.conv2d: "F.conv2d", torch.convolution: "torch.convolution",
                  F.conv_transpose2d: "F.conv_transpose2d"}


def _conv1x1_variants(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """conv1x1 with each classic mistake, where its shapes allow it."""
    n, c_in, h, wd = x.shape
    m = w[:, :, 0, 0]                                                               # (C_out, C_in)
    right = torch.einsum("oc,nchw->nohw", m, x)
    variants = {"the bias is missing: every output channel adds its own bias": right,
                "x.reshape(-1, C_in) on (N, C, H, W) mixes pixels and channels: move the channels last first "
                "(permute) or multiply over the channel axis": (x.reshape(-1, c_in) @ m.T + b).reshape(
                    n, -1, h, wd)}
    if m.shape[0] == m.shape[1]:
        variants["the weight is used transposed: weight[o, i] takes input channel i to output channel o"] = (
            torch.einsum("co,nchw->nohw", m, x) + b[:, None, None])
    if wd == m.shape[0]:
        variants["the bias is added along the last axis (the width): it belongs to the channel axis, "
                 "shape (C_out, 1, 1)"] = right + b
    return variants


@question("conv1x1", NOTEBOOK, points=2, hints=(
    "Fix one pixel (n, h, w): its C_in values form a vector. What does a 1x1 convolution do to that vector, "
    "and is it the same for every pixel?",
    "The same (C_out, C_in) matrix, the weight without its two 1x1 axes, multiplies every pixel's channel vector; "
    "the bias adds one value per output channel. torch.einsum, or moving the channels last with permute and "
    "using @, does it for all pixels at once."),
    reveal="return torch.einsum('oc,nchw->nohw', weight[:, :, 0, 0], x) + bias[:, None, None]")
def check_conv1x1(student: Callable[..., Any]) -> str:
    more = "hint('conv1x1') says more."
    g = case_generator(63)
    for n, c_in, c_out, h, w in conv1x1_cases():
        x = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64)
        weight = torch.randn(c_out, c_in, 1, 1, generator=g, dtype=torch.float64)
        bias = torch.randn(c_out, generator=g, dtype=torch.float64)
        want = F.conv2d(x, weight, bias)
        with Watch(CONV_FORBIDDEN) as watch, calling("conv1x1", x, weight, bias):
            out = student(x.clone(), weight.clone(), bias.clone())
        forbid(watch.used, "conv1x1", "write it as a product over the channel axis; F.conv2d is the reference.")
        what = f"conv1x1 on x {tuple(x.shape)}, weight {tuple(weight.shape)}"
        if out is None:
            raise Mistake(f"{what}: it returned None: compute the output and return it.", more)
        t = as_tensor(out, f"the output of {what}")
        if tuple(t.shape) == (n, h, w, c_out) and (n, h, w, c_out) != (n, c_out, h, w):
            raise Mistake(f"{what}: the output has shape {tuple(t.shape)}, channels last; PyTorch keeps them "
                          f"second, ({n}, {c_out}, {h}, {w}): permute back.", more)
        expect_shape(t, tuple(want.shape), f"the output of {what}", "one output channel per row of weight, the "
                     "pixels (H, W) as they were.")
        if not torch.allclose(t, want, atol=1e-9, rtol=1e-7):
            for why, value in _conv1x1_variants(x, weight, bias).items():
                if torch.allclose(t, value, atol=1e-9, rtol=1e-7):
                    raise Mistake(f"{what}: {why}.", more)
        expect_close(t, want, f"the output of {what} (against F.conv2d)", more, atol=1e-9, rtol=1e-7)
    return ("agrees with F.conv2d in float64 on every case, one input or output channel and a 1x1 map included, "
            "without calling a convolution.")


def gap_case() -> tuple[int, int, int]:
    """gap_saving's last feature map (C, H, W) for the current student; (96, 5, 5) without an id (the lecture
    prints the report's (128, 6, 6))."""
    if not student():
        return 96, 5, 5
    r = case_random(64)
    side = r.choice([3, 4, 5, 7])
    return r.choice([32, 48, 64, 96]), side, side


CLASSES = 10


@question("gap_saving", NOTEBOOK, answer_name="gap_saved_parameters", kind="concept", hints=(
    "Write both classifier heads as nn.Linear layers to the 10 classes: how many numbers enters each one, after "
    "flattening the (C, H, W) map, and after averaging each channel over its pixels?",
    "Count each head from what its Linear layer receives and what it outputs, weights and biases both; pooling "
    "and flattening learn nothing. Then check the direction of the difference the question asks for."),
    reveal="(10 * C * H * W + 10) - (10 * C + 10) = 10 * C * (H * W - 1); for a (96, 5, 5) map: "
    "24,010 - 970 = 23,040.")
def check_gap_saving(answer) -> str:
    c, h, w = gap_case()
    flat, gap = CLASSES * c * h * w + CLASSES, CLASSES * c + CLASSES
    what = f"gap_saved_parameters (a ({c}, {h}, {w}) map, {CLASSES} classes)"
    more = "hint('gap_saving') says more."
    if isinstance(answer, float) and 0 < answer < 1e3 and not float(answer).is_integer():
        raise Mistake(f"{what} is {answer:g}: that looks like a ratio; the question asks how many parameters "
                      "fewer, a count.", more)
    slips = {flat: "that is the flattening head's size; the question asks how many fewer the GAP head has",
             flat - CLASSES: "that is the flattening head's weights; the question asks how many fewer the GAP head "
                             "has",
             c * h * w - c: "each of the 10 classes has its own weight for every input, so both heads scale with 10",
             flat - gap + CLASSES: "a bias counted in one head only: both heads have 10 biases, which cancel",
             flat - gap - CLASSES: "a bias counted in one head only: both heads have 10 biases, which cancel",
             flat - 2 * CLASSES: "global average pooling averages each channel on its own: the GAP head takes C "
                                 "numbers, not one"}
    if is_integer(answer) and int(answer) in slips and int(answer) != flat - gap:
        raise Mistake(f"{what} is {int(answer):,}: {slips[int(answer)]}.", more)
    try:
        expect_count(answer, flat - gap, what)
    except Mistake as m:
        shown = m.message.split(", expected")[0]                 # never state the expected count
        raise Mistake(f"{shown}: count each head's weights and biases again.", more) from None
    return (f"{flat - gap:,} fewer: the flattening head has {flat:,} parameters, the GAP head {gap:,}; and the GAP "
            "head fits any H and W.")


def _batches(loader: Any, what: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over the student's DataLoader, as (x, y) pairs: what `for x, y in loader` sees (a fresh iterator,
    then its batches until StopIteration), through DataLoader's own methods so that the grader can replay it."""
    try:
        start = loader._get_iterator
    except AttributeError:
        raise Mistake(f"{what} returned a {type(loader).__name__}, not a DataLoader: return "
                      "torch.utils.data.DataLoader(dataset, ...), which starts a new pass at every epoch.",
                      "hint('make_loader') says more.") from None
    found = []
    with calling(f"iterating {what}"):
        it = start()
        while len(found) < 1000:
            try:
                batch = it._next_data()
            except StopIteration:
                break
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise Mistake(f"{what} yields a {type(batch).__name__}; each batch should be a pair (x, y).",
                              "TensorDataset(images, labels), or a Dataset whose __getitem__ returns (x, y).")
            found.append((batch[0], batch[1]))
    return found


def loader_cases() -> list[tuple[int, int, int, int]]:
    """make_loader's cases (N, batch_size, H, W): a drawn N and batch size that leave a last incomplete batch,
    a batch larger than the data set, and a last batch of one image."""
    r = case_random(65)
    n, size = r.randint(21, 40), r.randint(4, 8)
    n += 1 if n % size == 0 else 0
    return [(n, size, 28, 28), (5, 8, 10, 12), (7, 3, 9, 9)]


def _check_batches(batches: list, n: int, size: int, h: int, w: int, what: str, more: str) -> tuple:
    """The batch sizes, shapes, dtypes and range of one pass; returns all x (N, 1, H, W) and y (N,) in order."""
    sizes, want = [len(as_tensor(y, "y")) for _, y in batches], [size] * (n // size) + ([n % size] if n % size else [])
    if sizes == want[:-1] and n % size:
        raise Mistake(f"{what} gives batches of {sizes}: the last incomplete batch of {n % size} is dropped, so "
                      f"{n % size} of the {n} images are never seen.", "drop_last=False, the DataLoader's default.")
    if sizes != want:
        raise Mistake(f"{what} gives batches of {sizes} images, expected {want}.", more)
    for x, y in batches:
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise Mistake(f"{what} yields {type(x).__name__} and {type(y).__name__}; x and y should be tensors.",
                          more)
        if tuple(x.shape) == (len(y), h, w):
            raise Mistake(f"{what}: x has shape {tuple(x.shape)}, without the channel dimension: the model takes "
                          f"(B, 1, {h}, {w}).", "x[None] or unsqueeze(0) per image, or unsqueeze(1) per batch.")
        expect_shape(x, (len(y), 1, h, w), f"a batch x of {what}", more)
        if x.dtype != torch.float32:
            raise Mistake(f"{what}: x is {str(x.dtype).removeprefix('torch.')}; the model's weights are float32.",
                          "convert with .float() before dividing by 255.")
        if y.dtype != torch.int64 or tuple(y.shape) != (len(x),):
            raise Mistake(f"{what}: y is {str(y.dtype).removeprefix('torch.')} of shape {tuple(y.shape)}; "
                          "cross-entropy takes int64 labels of shape (B,).", more)
        if x.min() < 0:
            raise Mistake(f"{what}: x goes down to {x.min():.2f}: this loader gives pixel / 255 in [0, 1], "
                          "without normalising (no transforms.Normalize here).", more)
        if x.max() > 1.5:
            raise Mistake(f"{what}: x goes up to {x.max():.0f}: the pixels are still 0 to 255; scale them to "
                          "[0, 1].", more)
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def _check_passes(epochs: list, images: torch.Tensor, labels: torch.Tensor, size: int, train: bool, drawn: bool,
                  what: str, more: str) -> None:
    """The passes over one loader: every image once per pass with its label; evaluation in the stored order and
    unaugmented; training reshuffled at every pass (checked on the drawn case) and augmented."""
    n, h, w = images.shape
    stored = images[:, None].float() / 255
    passes = []
    for epoch, batches in enumerate(epochs, 1):
        if not batches:
            raise Mistake(f"{what}: pass {epoch} over it yields nothing.", more)
        x, y = _check_batches(batches, n, size, h, w, what, more)
        if sorted(y.tolist()) != sorted(labels.tolist()):
            raise Mistake(f"{what}: pass {epoch} does not give every label once: each epoch visits every image "
                          "exactly once.", more)
        passes.append((x, y))
    if not train and not torch.equal(passes[0][1], labels):
        raise Mistake(f"{what}: the labels come in another order than stored: evaluation needs no shuffling "
                      "(shuffle=False).", more)
    if not train and not torch.equal(passes[0][0], stored):
        raise Mistake(f"{what}: the images differ from the stored ones / 255: augmentation is for training only, "
                      "and each image must stay with its label.", more)
    if train and drawn and torch.equal(passes[0][1], labels):
        raise Mistake(f"{what}: the training batches come in the stored order: shuffle them.", more)
    if train and drawn and torch.equal(passes[0][1], passes[1][1]):
        raise Mistake(f"{what}: both epochs come in the same order: the data were shuffled once, not at every "
                      "epoch (DataLoader's shuffle=True reshuffles at each pass).", more)
    by_label = stored[torch.argsort(labels)]                      # the stored image of each label
    if train and all(torch.equal(x, by_label[y]) for x, y in passes):
        raise Mistake(f"{what}: every training image equals its stored image / 255: pass each image through "
                      "augment when train is True.", more)


@question("make_loader", NOTEBOOK, points=2, hints=(
    "Build it in two parts: a Dataset that returns one (image, label) pair as the model wants it, then a "
    "DataLoader that batches and shuffles. Which of the two should know whether this is training?",
    "Compare one example with the description: its dtype, its shape (the model wants a channel axis) and its "
    "range. Then ask which of the two parts changes each image, which one changes the order, and what happens to "
    "the images left over after the last full batch (read the DataLoader's defaults)."),
    reveal="class Digits(Dataset): __len__ returns len(labels); __getitem__(i): x = images[i][None].float() / 255; "
    "return (augment(x) if train else x), labels[i]. make_loader returns DataLoader(Digits(images, labels, train), "
    "batch_size=batch_size, shuffle=train).")
def check_make_loader(student: Callable[..., Any]) -> str:
    more = "hint('make_loader') says more."
    g = case_generator(65)
    for case_no, (n, size, h, w) in enumerate(loader_cases()):
        images = torch.randint(0, 256, (n, h, w), generator=g, dtype=torch.uint8)
        labels = torch.randperm(n, generator=g)                   # each label names its image
        with torch.random.fork_rng(devices=[]):                   # the student's draws: seeded, then put back
            torch.manual_seed(variant_seed(65) + case_no)
            for train in (False, True):
                what = f"make_loader(images ({n}, {h}, {w}), labels, batch_size={size}, train={train})"
                with calling(what):
                    loader = student(images.clone(), labels.clone(), size, train)
                if loader is None:
                    raise Mistake(f"{what} returned None: return the DataLoader.", more)
                epochs = [_batches(loader, what) for _ in range(1 + train)]
                _check_passes(epochs, images, labels, size, train, case_no == 0, what, more)
    return ("the right batch sizes (the last incomplete batch kept), float32 (B, 1, H, W) in [0, 1] and int64 "
            "labels; evaluation in the stored order without augmentation, training reshuffled each epoch and "
            "augmented.")


def sheet_cases(student_id: str) -> dict[str, Any]:
    """The sizes this sheet's checks draw for `student_id` (which they use from now on): block_parameters' block
    (C_in, C_out, stride), stride2_shape's block and input (C_in, C_out, (N, C_in, H, W)), zero_gamma's input x
    (4, 8, 6, 6) and gap_saving's last feature map (C, H, W)."""
    set_student(student_id)
    return {"block": block_case(), "stride2": stride2_case(), "zero_gamma_x": zero_gamma_input(),
            "gap_map": gap_case()}


@question("fix_block", NOTEBOOK, answer_name="FixedBlock", kind="debug", points=2, hints=(
    "Run BuggyBlock(8, 8)(torch.randn(2, 8, 6, 6)) and look at what comes back; then compare the forward line by "
    "line with the block of Exercise 1.",
    "Three bugs: what forward returns, where the shortcut is added (before or after bn2), and where the ReLU is "
    "(before or after BatchNorm, before or after the addition)."),
    reveal="out = relu(bn1(conv1(x))); out = bn2(conv2(out)); return relu(out + shortcut(x)).")
def check_fix_block(StudentBlock) -> str:
    _grade_block(StudentBlock, "fix_block", "FixedBlock")
    return "the forward returns relu(F(x) + s(x)) for all four shortcuts, in training and evaluation mode."


def batchnorm_forward_reference(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5,
                                unbiased: bool = False) -> torch.Tensor:
    """BatchNorm in training mode for x (N, D): normalise each column with the batch's mean and variance."""
    return gamma * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=unbiased) + eps) + beta


def _autograd_bn(dout, x, gamma, beta, **options) -> tuple[torch.Tensor, ...]:
    """dx, dgamma, dbeta of the reference forward, by autograd in float64."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, gamma, beta)]
    with torch.enable_grad():
        batchnorm_forward_reference(*leaves, **options).backward(dout)
    return tuple(t.grad.detach() for t in leaves)


def _bn_inputs(g: torch.Generator, n: int, d: int) -> tuple[torch.Tensor, ...]:
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 3 + 1
    gamma = torch.randn(d, generator=g, dtype=torch.float64) + 1
    beta, dout = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    return dout, x, gamma, beta


def _dx_variants(dout, x, gamma, beta) -> dict[str, torch.Tensor]:
    """dx with each classic mistake of a BatchNorm backward."""
    std = torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    return {"the batch mean and variance treated as constants (they depend on x too)": dout * gamma / std,
            "the unbiased variance (N - 1); training-mode BatchNorm divides by N":
                _autograd_bn(dout, x, gamma, beta, unbiased=True)[0],
            "no eps under the square root (the forward pass has one)": _autograd_bn(dout, x, gamma, beta, eps=0.0)[0],
            "gamma left out of the chain rule": _autograd_bn(dout, x, torch.ones_like(gamma), beta)[0],
            "only the gradient through the mean, not through the variance": (
                dout - dout.mean(0)) * gamma / std}


BN_FORBIDDEN = {torch.Tensor.backward: "Tensor.backward()", torch.autograd.grad: "torch.autograd.grad",
                torch.autograd.backward: "torch.autograd.backward"}


@question("batchnorm_backward", NOTEBOOK, answer_name="batchnorm_backward", kind="backward", points=2, hints=(
    "Draw the graph: mu = mean(x), var = mean((x - mu)^2), xhat = (x - mu) / sqrt(var + eps), y = gamma xhat + "
    "beta. dbeta and dgamma are sums over the batch; dx flows through three paths (directly, through mu, "
    "through var).",
    "dbeta and dgamma come from the last line alone, y = gamma xhat + beta, summed over the axis gamma and beta are "
    "shared along. For dx, go back one node at a time and add the contributions of every path; if it is off, "
    "check which path you left out, since mu and var are functions of every x in the column."),
    reveal="dx = (N * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0)) / (N * torch.sqrt(var + eps)).")
def check_batchnorm_backward(student: Callable[..., Any]) -> str:
    more = "hint('batchnorm_backward') says more."
    g = case_generator(60)
    worst = 0.0
    for n, d in [(6, 5), (16, 3)]:
        dout, x, gamma, beta = _bn_inputs(g, n, d)
        want = _autograd_bn(dout, x, gamma, beta)
        variants = _dx_variants(dout, x, gamma, beta)
        with Watch(BN_FORBIDDEN) as watch, calling("batchnorm_backward", dout, x, gamma, beta):
            result = student(dout.clone(), x.clone(), gamma.clone(), beta.clone())
        forbid(watch.used, "batchnorm_backward", "derive the gradients with the chain rule; autograd only checks them.")
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise Mistake(f"batchnorm_backward returned a {type(result).__name__}; return (dx, dgamma, dbeta).", more)
        dx, dgamma, dbeta = result
        if any(getattr(t, "dtype", None) in (torch.float32, np.float32) for t in result):
            raise Mistake("batchnorm_backward returns float32 tensors for float64 inputs: the rounding alone is "
                          "above 1e-7; keep the inputs' dtype (no torch.zeros(...) without dtype).", more)
        for name, got, ref in (("dbeta", dbeta, want[2]), ("dgamma", dgamma, want[1])):
            expect_shape(got, (d,), f"{name} for an ({n}, {d}) input", "one value per feature: sum over the batch axis 0.")
        t_beta, t_gamma = as_tensor(dbeta, "dbeta"), as_tensor(dgamma, "dgamma")
        if torch.allclose(t_beta, want[1]) and torch.allclose(t_gamma, want[2]):
            raise Mistake("dgamma and dbeta are swapped: return (dx, dgamma, dbeta) in that order.", more)
        if torch.allclose(t_gamma, (dout * x).sum(0)):
            raise Mistake("dgamma multiplies dout by x; y depends on gamma through the normalised x.", more)
        grad_check(dbeta, want[2], f"dbeta ({n}, {d})", more)
        grad_check(dgamma, want[1], f"dgamma ({n}, {d})", more)
        t_dx = expect_shape(dx, (n, d), f"dx for an ({n}, {d}) input", "dx has the shape of x.")
        if not torch.allclose(t_dx, want[0], atol=1e-9, rtol=1e-7):
            for why, value in variants.items():
                if torch.allclose(t_dx, value, atol=1e-9, rtol=1e-6):
                    raise Mistake(f"dx ({n}, {d}) matches the gradient with {why}.", more, earned=1,
                                  credit="dgamma and dbeta")
        try:
            worst = max(worst, grad_check(dx, want[0], f"dx ({n}, {d})", more))
        except Mistake as m:
            raise Mistake(m.message, m.hint, earned=1, credit="dgamma and dbeta") from None
    return (f"dx, dgamma and dbeta agree with autograd in float64: relative error {worst:.1e}, below 1e-7, "
            "computed without autograd.")


written_question("identity_path", NOTEBOOK, points=2, hints=(
    "What does a block compute when its branch outputs F(x) = 0? What must a plain layer learn to do the same?",
    "Think of the gradient too: y = x + F(x) gives dL/dx = dL/dy (I + dF/dx); then say what the ReLU after "
    "the addition changes.",
),
    reveal="With F(x) = 0 a block is the identity (up to the ReLU), which a plain layer must learn from its "
    "weights; and dL/dx = dL/dy (I + dF/dx) passes the gradient through the identity term however small "
    "dF/dx is. The ReLU after the addition masks both where x + F(x) < 0, so the identity path is only "
    "clean where the sum is positive.")
