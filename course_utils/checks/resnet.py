"""Questions of notebook 06 (ResNet upgrade): a residual block and a squeeze-and-excitation block."""
import torch
from torch import nn

from ..resnets import ResidualBlock, SEBlock
from . import Mistake, question
from .tools import expect_close, expect_shape

NOTEBOOK = "06_resnet_upgrade"


def _build(cls, *args) -> nn.Module:
    """Instantiate the student's class, checking it is a module."""
    module = cls(*args)
    if not isinstance(module, nn.Module):
        raise Mistake(f"{cls.__name__}{args} is a {type(module).__name__}, not an nn.Module.",
                      "subclass nn.Module and call super().__init__() first.")
    return module


def _count(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


def _copy_parameters(theirs: nn.Module, ours: nn.Module, what: str, order_hint: str) -> None:
    """Copy `ours` parameters into `theirs`, in order; reshapes allowed (1x1 conv for a linear)."""
    got = [p for p in theirs.parameters()]
    want = [p for p in ours.parameters()]
    got_shapes, want_shapes = [tuple(p.shape) for p in got], [tuple(p.shape) for p in want]
    if [p.numel() for p in got] != [p.numel() for p in want]:
        same_set = sorted(p.numel() for p in got) == sorted(p.numel() for p in want)
        raise Mistake(f"{what} has parameters of shapes {got_shapes}, expected {want_shapes}.",
                      order_hint if same_set else
                      f"{sum(p.numel() for p in got):,} parameters against {sum(p.numel() for p in want):,} "
                      "expected: " + order_hint)
    with torch.no_grad():
        for p, q in zip(got, want):
            p.copy_(q.reshape(p.shape))


@question("residual_block", NOTEBOOK, answer_name="ResidualBlock", points=2)
def check_residual_block(StudentBlock) -> str:
    order = ("define conv1 (3x3, stride, no bias), bn1, conv2 (3x3, no bias), bn2, then the shortcut: "
             "nothing for the identity, a 1x1 conv (stride, no bias) and a BatchNorm for the projection.")
    g = torch.Generator().manual_seed(6)
    cases = [(8, 8, 1, "identity"), (8, 16, 1, "projection"), (8, 16, 2, "strided projection"),
             (8, 8, 2, "strided projection, equal channels")]
    for c_in, c_out, stride, kind in cases:
        torch.manual_seed(0)
        theirs, ours = _build(StudentBlock, c_in, c_out, stride), ResidualBlock(c_in, c_out, stride)
        what = f"ResidualBlock({c_in}, {c_out}, {stride}) ({kind} shortcut)"
        if c_in == c_out and stride != 1 and _count(theirs) == _count(ResidualBlock(c_in, c_out)):
            raise Mistake(f"{what} has no projection shortcut: with stride {stride}, F(x) is "
                          f"{10 // stride}x{10 // stride} on a 10x10 input, while the identity keeps x at 10x10.",
                          "use the 1x1 projection whenever stride != 1 or in_channels != out_channels, "
                          "not only when the channels change.")
        _copy_parameters(theirs, ours, what, order)
        x = torch.randn(4, c_in, 10, 10, generator=g)
        for mode in ("train", "eval"):
            theirs.train(mode == "train"), ours.train(mode == "train")
            try:
                out = theirs(x)
            except RuntimeError as err:
                raise Mistake(f"{what} failed on a (4, {c_in}, 10, 10) batch: {err}",
                              "F(x) and the shortcut must agree in shape: give the 1x1 projection "
                              "the stride of conv1.") from None
            want = ours(x).detach()
            expect_shape(out, tuple(want.shape), f"the output of {what}",
                         "the first conv and the 1x1 shortcut both take the stride; padding 1 keeps the size.")
            if (out < 0).any():
                raise Mistake(f"the output of {what} has negative values.",
                              "apply the final ReLU after adding the shortcut: relu(F(x) + s(x)).")
            expect_close(out, want, f"the output of {what} in {mode} mode",
                         "F(x) = bn2(conv2(relu(bn1(conv1(x))))); y = relu(F(x) + shortcut(x)).", atol=1e-4)
    return ("identity, projection and strided projection shortcuts (also with equal channels) give the "
            "reference output in train and eval mode.")


@question("se_block", NOTEBOOK, answer_name="SEBlock", points=2)
def check_se_block(StudentSE) -> str:
    order = "define fc1 = Linear(C, C // r) then fc2 = Linear(C // r, C), both with a bias."
    g = torch.Generator().manual_seed(7)
    for channels, reduction in [(16, 4), (32, 8)]:
        torch.manual_seed(0)
        theirs, ours = _build(StudentSE, channels, reduction), SEBlock(channels, reduction)
        what = f"SEBlock({channels}, {reduction})"
        _copy_parameters(theirs, ours, what, order)
        x = torch.rand(3, channels, 5, 5, generator=g) + 0.5    # positive, so out / x is safe
        out = theirs(x)
        want = ours(x).detach()
        expect_shape(out, tuple(want.shape), f"the output of {what}",
                     "the block rescales x: its output has the shape of its input.")
        gates = (out.detach() / x)                                         # (N, C, H, W)
        if not torch.allclose(gates, gates[:, :, :1, :1].expand_as(gates), atol=1e-4):
            raise Mistake(f"{what}: output / input is not constant over each channel's pixels.",
                          "multiply x by one gate per (image, channel): g[:, :, None, None].")
        if not ((gates > 0) & (gates < 1)).all():
            raise Mistake(f"{what}: the gates output / input leave the interval (0, 1).",
                          "squash the excitation with a sigmoid, and multiply x by it (do not add).")
        expect_close(out, want, f"the output of {what}",
                     "squeeze with the mean over H and W (not the max), then sigmoid(fc2(relu(fc1(z)))).",
                     atol=1e-5)
    return "squeeze (mean), excite (fc-ReLU-fc-sigmoid) and per-channel scaling match the reference."
