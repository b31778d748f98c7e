"""Questions of notebook 06 (ResNet upgrade): the residual block and its shortcut, squeeze-and-excitation,
a block's parameters and output shape, what residual connections fix, a buggy block, BatchNorm's backward."""
from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cost import count_parameters
from ..resnets import ResidualBlock, SEBlock
from . import Mistake, question, written_question
from .tools import case_generator
from .tools import (Watch, as_tensor, calling, expect_choice, expect_close, expect_count, expect_shape, forbid,
                    grad_check)

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
    "The shortcut is the identity only when in_channels == out_channels AND stride == 1; in every other case "
    "(different channels, or stride 2, or both) it is a 1x1 convolution with the block's stride, then a "
    "BatchNorm. The stride belongs to conv1, not conv2."),
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


PREDICT_BLOCK = (16, 32, 2)


@question("block_parameters", NOTEBOOK, answer_name="predicted_block_parameters", kind="predict", hints=(
    "Count layer by layer: two 3x3 convolutions, their BatchNorms, and the shortcut this block needs.",
    "A k x k convolution from C_in to C_out without bias has C_out * C_in * k * k weights; a BatchNorm has a "
    "learned scale and shift per channel (its running statistics are buffers, not parameters). Channels change "
    "and the stride is 2, so the shortcut projects."),
    reveal="conv1 32*16*9 = 4,608, bn1 64, conv2 32*32*9 = 9,216, bn2 64, projection 32*16 = 512 and its BatchNorm 64: "
    "14,528.")
def check_block_parameters(predicted) -> str:
    c_in, c_out, stride = PREDICT_BLOCK
    truth = count_parameters(ResidualBlock(c_in, c_out, stride))
    projection, bn_affine = c_in * c_out, 3 * 2 * c_out               # 1x1 weights; gamma and beta of 3 BatchNorms
    named = {truth - projection - bn_affine // 3: "you left out the shortcut: 16 -> 32 channels with stride 2 "
                                                  "needs the projection (a 1x1 convolution and its BatchNorm)",
             truth - projection: "you left out the projection's 1x1 convolution",
             truth - bn_affine: "you left out the BatchNorms' learned scale and shift",
             truth + bn_affine: "you counted the BatchNorms' running mean and variance: they are buffers, "
                                "not parameters",
             truth + 3 * c_out: "you counted a bias for each convolution; these have none (a BatchNorm follows)",
             truth + 2 * c_out: "you counted a bias for the two 3x3 convolutions; they have none (a BatchNorm follows)",
             truth + 8 * projection: "you counted the projection as a 3x3 convolution; it is 1x1"}
    what = f"predicted_block_parameters (ResidualBlock{PREDICT_BLOCK})"
    try:
        expect_count(predicted, truth, what)
    except Mistake as m:
        whole = isinstance(predicted, (int, np.integer)) and not isinstance(predicted, (bool, np.bool_))
        reason = named.get(int(predicted)) if whole else None
        if reason:
            raise Mistake(f"{what} is {int(predicted):,}: {reason}. The cell below measures {truth:,}.",
                          "hint('block_parameters') says more.") from None
        raise Mistake(f"{m.message} The cell below measures it; count each layer's weights again.",
                      m.hint or "hint('block_parameters') says more.") from None
    return f"{truth:,} parameters, the 3x3 weights dominating and the projection adding {projection + 2 * c_out}."


@question("stride2_shape", NOTEBOOK, answer_name="predicted_output_shape", kind="predict", hints=(
    "Follow one image through conv1: its channels, its stride, its padding. The rest of the block keeps "
    "that shape.",
    "A 3x3 convolution with padding 1 and stride 2 visits rows 0, 2, 4, ...: on 13 rows the last window "
    "starts at row 12, so it does not simply halve and round down."),
    reveal="floor((13 + 2*1 - 3) / 2) + 1 = 7, so (8, 32, 7, 7): batch, out_channels, then 7 x 7.")
def check_stride2_shape(predicted) -> str:
    c_in, c_out, stride = PREDICT_BLOCK
    with torch.no_grad():
        truth = tuple(ResidualBlock(c_in, c_out, stride).eval()(torch.zeros(8, c_in, 13, 13)).shape)
    what = "predicted_output_shape (ResidualBlock(16, 32, stride=2) on an (8, 16, 13, 13) batch)"
    if not isinstance(predicted, (tuple, list, torch.Size)):
        raise Mistake(f"{what} is a {type(predicted).__name__}; write the shape as a tuple such as (8, 1, 2, 3).")
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in predicted):
        raise Mistake(f"{what} is {tuple(predicted)!r:.80}: a shape holds whole numbers (int).",
                      "a convolution's output size is rounded: hint('stride2_shape').")
    got = tuple(int(d) for d in predicted)
    named = {(8, 32, 6, 6): "13 / 2 rounded down: with padding 1, the stride-2 window also starts on the last row",
             (8, 32, 13, 13): "the stride is ignored: stride 2 shrinks the map",
             (8, 16, 7, 7): "the channels are the input's: the block outputs out_channels",
             (32, 7, 7): "the batch dimension is missing: the block keeps N = 8",
             (8, 32, 5, 5): "that is without padding; conv1 pads by 1",
             (8, 32, 14, 14): "a stride-2 convolution never makes the map larger"}
    if got != truth:
        reason = named.get(got) or "count the output rows of conv1 again"
        raise Mistake(f"{what} is {got}: {reason}. The cell below measures {truth}.",
                      "hint('stride2_shape') says more.")
    return f"{truth}: out_channels, and 13 rows with padding 1 and stride 2 give 7."


PURPOSE_OPTIONS = {
    "a": "vanishing gradients were already largely addressed by normalized initialisation and BatchNorm (He et al. "
         "2016 say so, and §3.3 measured a He-initialised plain stack's gradients): deep plain nets with BatchNorm "
         "and He initialisation do train, so this is not what shortcuts fix.",
    "b": "degradation: a deeper plain network reaches a higher training error than a shallower one, although it "
         "could copy it with identity layers; shortcuts make the identity the default (F = 0).",
    "c": "over-fitting would show a lower training error and a higher test error; degradation is a higher "
         "training error, an optimisation problem, not a generalisation one.",
    "d": "shortcuts are not a regulariser: they add no penalty and no noise, and they store nothing across inputs; "
         "they change which functions are easy to reach from the initial weights.",
}


@question("resnet_purpose", NOTEBOOK, answer_name="resnet_fixes", kind="concept", hints=(
    "Reread §3.3 and §3.4 of the lecture: which error got worse with depth, the training or the test error?",
    "He et al. (2016) wrote that vanishing gradients 'have been largely addressed by normalized initialization "
    "and intermediate normalization layers'. The problem they found was in training error."),
    reveal="(b): degradation, the higher training error of deeper plain networks.")
def check_resnet_purpose(answer) -> str:
    return expect_choice(answer, PURPOSE_OPTIONS, "b", "resnet_fixes", "run hint('resnet_purpose').")


RELU_OPTIONS = {
    "a": "∂L/∂x = ∂L/∂y (I + ∂F/∂x) holds for y = x + F(x) without the ReLU; the ReLU after the addition multiplies "
         "the gradient by its 0/1 mask first.",
    "b": "the ReLU acts on the sum x + F(x), not on x before the addition; a negative x can still pass where F(x) "
         "makes the sum positive.",
    "c": "the gradient of y = ReLU(x + F(x)) with respect to x is masked by 1[x + F(x) > 0]: where the sum is "
         "negative the identity path carries no gradient; pre-activation blocks move the ReLU into the branch.",
    "d": "a ReLU never makes outputs negative; it zeroes the negative part of the sum.",
}


@question("relu_after_add", NOTEBOOK, answer_name="relu_effect", kind="concept", hints=(
    "Write the gradient of y = ReLU(x + F(x)) with respect to x with the chain rule: what does the ReLU contribute?",
    "ReLU'(z) is 1 where z > 0 and 0 elsewhere; here z is the sum x + F(x)."),
    reveal="(c): the 0/1 mask of the sum switches the identity path off wherever x + F(x) < 0.")
def check_relu_after_add(answer) -> str:
    return expect_choice(answer, RELU_OPTIONS, "c", "relu_effect", "run hint('relu_after_add').")


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
    "dbeta = sum over N of dout, dgamma = sum over N of dout * xhat. For dx, start from dxhat = dout * gamma and "
    "remember that mu and var are functions of every x in the column."),
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
