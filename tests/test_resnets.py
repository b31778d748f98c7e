"""The ResNets of notebook 06: the report's network against its Appendix C, shapes and costs, shortcuts,
squeeze-and-excitation, batch augmentation, and the graders of its exercises."""
import ast
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate
from torchvision import transforms

from course_utils.checks import _HINTS_SHOWN, grade, hint, questions_for, set_student, student, written_for
from course_utils.checks.resnet import (block_case, block_slips, gap_case, loader_cases, sheet_cases,
                                        stride2_case, stride2_slips, zero_gamma_input)
from course_utils.cost import count_macs, count_parameters, layer_costs
from course_utils.data import MEAN, STD
from course_utils.grading.replay import record, replay
from course_utils.models import TwoLayerCNN
from course_utils.model_cache import TrainConfig
from course_utils.resnets import (Augment, FastResNet, ReportBlock, ReportResNet, ResidualBlock, SEBlock,
                                  random_affine, sgd_cosine, train_or_load_resnet)
from course_utils.training import fit

BACKGROUND = -MEAN / STD


def block_macs(c_in: int, c_out: int, positions: int) -> int:
    """Two 3x3 convs (c_in->c_out, c_out->c_out) plus a 1x1 projection when the channels change."""
    return positions * (9 * c_in * c_out + 9 * c_out * c_out + (c_in * c_out if c_in != c_out else 0))


def describe(module: nn.Module) -> str:
    """A leaf module as Appendix C would spell it: kind, channels, kernel, stride, padding, bias."""
    if isinstance(module, nn.Conv2d):
        return (f"Conv2d {module.in_channels}->{module.out_channels} k{module.kernel_size[0]} "
                f"s{module.stride[0]} p{module.padding[0]} bias={module.bias is not None}")
    if isinstance(module, nn.BatchNorm2d):
        return f"BatchNorm2d {module.num_features}"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return f"{type(module).__name__} k{module.kernel_size} s{module.stride}"
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features}->{module.out_features} bias={module.bias is not None}"
    return type(module).__name__


def appendix_c() -> list[str]:
    """The report's modified ResNet18, from its Appendix C: default nn.Conv2d (a bias everywhere), the 1x1
    shortcut conv3 a plain convolution, pooling with stride 2 (13x13 after the stem)."""
    layers = ["Conv2d 1->8 k3 s1 p0 bias=True", "BatchNorm2d 8", "ReLU", "MaxPool2d k2 s2"]
    channels = (8, 16, 16, 32, 32, 64, 64, 128, 128)
    for c_in, c_out in zip(channels, channels[1:]):
        layers += [f"Conv2d {c_in}->{c_out} k3 s1 p1 bias=True", f"Conv2d {c_out}->{c_out} k3 s1 p1 bias=True"]
        layers += [f"Conv2d {c_in}->{c_out} k1 s1 p0 bias=True"] if c_in != c_out else []
        layers += [f"BatchNorm2d {c_out}", f"BatchNorm2d {c_out}"]
    return layers + ["AvgPool2d k2 s2", "Linear 4608->10 bias=True"]


def test_report_resnet_has_the_layers_and_parameters_of_appendix_c():
    model = ReportResNet()
    leaves = [describe(m) for m in model.modules() if not list(m.children())]
    assert leaves == appendix_c()
    assert count_parameters(model) == 745_626


def test_report_resnet_matches_its_description():
    model = ReportResNet()
    channels = (8, 16, 16, 32, 32, 64, 64, 128, 128)
    expected_macs = 26 * 26 * 8 * 9 + sum(block_macs(a, b, 13 * 13) for a, b in zip(channels, channels[1:])) \
        + 36 * 128 * 10
    assert count_macs(model) == expected_macs
    block_shapes = [r.out_shape for r in layer_costs(model) if r.name.startswith("blocks") and r.kind == "Conv2d"]
    assert {shape[1:] for shape in block_shapes} == {(13, 13)}
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_macs(model) > 100 * count_macs(TwoLayerCNN())


def test_report_block_adds_before_its_relu_and_its_shortcut_is_a_plain_conv():
    block = ReportBlock(8, 8).eval()
    nn.init.zeros_(block.bn2.weight), nn.init.zeros_(block.bn2.bias)     # F(x) = 0
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(block(x), torch.relu(x))
    projected = ReportBlock(8, 16, use_1x1conv=True).eval()
    nn.init.zeros_(projected.bn2.weight), nn.init.zeros_(projected.bn2.bias)
    torch.testing.assert_close(projected(x), torch.relu(projected.conv3(x)))
    with pytest.raises(ValueError, match="use_1x1conv"):
        ReportBlock(8, 16)


def test_downsampling_variant_keeps_the_depth_and_shrinks_the_maps():
    report, variant = ReportResNet(), ReportResNet(downsample=True)
    convs = lambda m: [r for r in layer_costs(m) if r.name.endswith("conv1")]
    assert len(convs(variant)) == len(convs(report)) == 8
    assert [r.out_shape[1] for r in convs(variant)] == [13, 13, 7, 7, 4, 4, 2, 2]
    assert count_macs(variant) < count_macs(report) / 10
    assert variant(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_fast_resnet_halves_the_resolution_at_every_stage():
    model = FastResNet(widths=(8, 16, 32, 64, 128))
    first_convs = [r for r in layer_costs(model) if r.name.endswith("conv1") or r.name == "stem.0"]
    assert [r.out_shape for r in first_convs] == [(8, 28, 28), (16, 14, 14), (32, 7, 7), (64, 4, 4), (128, 2, 2)]
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert count_macs(model) < count_macs(ReportResNet()) / 5


@pytest.mark.parametrize("c_in, c_out, stride, projection", [(8, 8, 1, False), (8, 16, 1, True), (8, 8, 2, True)])
def test_residual_block_uses_a_projection_only_when_shapes_differ(c_in, c_out, stride, projection):
    block = ResidualBlock(c_in, c_out, stride)
    assert isinstance(block.shortcut, nn.Identity) != projection
    assert block(torch.randn(2, c_in, 8, 8)).shape == (2, c_out, 8 // stride, 8 // stride)


def test_residual_block_with_silenced_branch_is_relu_of_input():
    block = ResidualBlock(8, 8).eval()
    nn.init.zeros_(block.bn2.weight)            # F(x) = bn2(...) = 0
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_se_block_gates_channels():
    se = SEBlock(16, reduction=4)
    x = torch.rand(2, 16, 5, 5) + 0.1
    gates = se(x) / x
    assert torch.allclose(gates, gates[:, :, :1, :1].expand_as(gates), atol=1e-5)
    assert ((gates > 0) & (gates < 1)).all()
    for p in se.parameters():
        nn.init.zeros_(p)
    torch.testing.assert_close(se(x), x / 2)   # sigmoid(0) = 1/2
    with pytest.raises(ValueError, match="divisible"):
        SEBlock(10, reduction=4)


def test_se_option_adds_one_gate_per_block():
    plain, se = FastResNet(se_reduction=None), FastResNet(se_reduction=8)
    assert sum(isinstance(m, SEBlock) for m in se.modules()) == len(se.blocks)
    assert count_parameters(se) > count_parameters(plain)


def test_random_affine_moves_each_image_differently_and_keeps_the_background(mnist):
    X = mnist.X_test[:1].repeat(8, 1, 1, 1)
    torch.testing.assert_close(random_affine(X, max_degrees=0, max_shift=0), X, atol=1e-5, rtol=0)
    moved = random_affine(X, generator=torch.Generator().manual_seed(0))
    assert moved.shape == X.shape
    assert all(not torch.allclose(moved[0], moved[i], atol=1e-3) for i in range(1, 8))
    blank = torch.full((2, 1, 28, 28), BACKGROUND)
    torch.testing.assert_close(random_affine(blank), blank)
    with pytest.raises(ValueError, match="batch"):
        random_affine(X[0])


def test_augment_acts_only_in_training_mode(mnist):
    augment, X = Augment(), mnist.X_test[:4]
    assert torch.equal(augment.eval()(X), X)
    assert not torch.equal(augment.train()(X), X)


@pytest.mark.parametrize("se_reduction", [None, 8])
def test_fast_resnet_learns_from_a_small_subset(mnist, se_reduction):
    data = mnist.with_validation().subset(4096, 1000, 1000)
    torch.manual_seed(0)
    model = FastResNet(widths=(8, 16, 32, 64), se_reduction=se_reduction)
    optimizer, scheduler = sgd_cosine(model, epochs=3)
    history = fit(model, data, optimizer, 3, batch_size=128, scheduler=scheduler, device=torch.device("cpu"),
                  progress=False)
    assert history.val_acc[-1] > 0.9 and len(history.test_acc) == 1
    assert history.step_loss[-1] < history.step_loss[0] / 3


def test_sgd_cosine_decays_to_near_zero_within_the_run():
    model = nn.Linear(2, 2)
    optimizer, scheduler = sgd_cosine(model, epochs=4, lr=0.1)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == sorted(rates, reverse=True)
    assert rates[0] > 0.09 and rates[-1] < 0.01



# ---------- the graders of notebook 06's exercises ----------

SHEET = Path(__file__).resolve().parent.parent / "solutions" / "06_resnet_upgrade.ipynb"


def sheet_namespace() -> dict:
    """The solution sheet's imports, functions and classes, executed in order (nothing that runs long)."""
    namespace: dict = {}
    for cell in nbformat.read(SHEET, as_version=4).cells:
        if cell.cell_type == "code":
            for node in ast.parse(cell.source).body:
                if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
                    exec(compile(ast.Module([node], type_ignores=[]), str(SHEET), "exec"), namespace)
    return namespace


def failure(qid: str, answer) -> str:
    """The message of a wrong answer (asserting it fails)."""
    result = grade(qid, answer)
    assert result.attempted and not result.passed, result.message
    return result.message


class Stub(nn.Module):
    def __init__(self, *args):
        super().__init__()
        raise NotImplementedError()


class IfInForwardBlock(nn.Module):
    """Convolutions with a bias, F.relu, the projection as two attributes and an if in forward."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.project = stride != 1 or in_channels != out_channels
        if self.project:
            self.proj_conv = nn.Conv2d(in_channels, out_channels, 1, stride)
            self.proj_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.project:
            x = self.proj_bn(self.proj_conv(x))
        return F.relu(out + x)


class SequentialBranchBlock(nn.Module):
    """The shortcut defined first, the branch an nn.Sequential with nn.ReLU, the final ReLU a module."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.shortcut = nn.Identity() if stride == 1 and in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True), nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.branch(x) + self.shortcut(x))


class ProjectsOnlyWhenChannelsChange(ResidualBlock):
    """The corpus's mistake: the projection decided by the channels alone, the stride ignored."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if in_channels == out_channels:
            self.shortcut = nn.Identity()


class ProjectsOnlyWhenChannelsChangeSubsampling(ProjectsOnlyWhenChannelsChange):
    """The same mistake, with the addition kept from failing by subsampling x."""

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        s = self.shortcut(x)
        return torch.relu(out + (s[:, :, ::2, ::2] if s.shape[-1] != out.shape[-1] else s))


class AlwaysProjects(ResidualBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(out_channels))


class ProjectsOnlyWhenStrided(ResidualBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if stride == 1:
            self.shortcut = nn.Identity()


class ProjectionWithoutStride(ResidualBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if stride != 1 or in_channels != out_channels:
            self.shortcut[0] = nn.Conv2d(in_channels, out_channels, 1, bias=False)


class ProjectionWithoutBatchNorm(ResidualBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class StrideOnSecondConv(ResidualBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BatchStatisticsAlways(ResidualBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels, track_running_stats=False)
        self.bn2 = nn.BatchNorm2d(out_channels, track_running_stats=False)
        if stride != 1 or in_channels != out_channels:
            self.shortcut[1] = nn.BatchNorm2d(out_channels, track_running_stats=False)


def block_with_forward(body):
    """A ResidualBlock whose forward is `body(self, x)`."""
    return type("StudentBlock", (ResidualBlock,), {"forward": body})


branch = lambda self, x: self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
BLOCK_MISTAKES = {
    "no final ReLU": (block_with_forward(lambda self, x: branch(self, x) + self.shortcut(x)),
                      "without the ReLU that ends the block"),
    "ReLU before the addition": (block_with_forward(lambda self, x: torch.relu(branch(self, x)) + self.shortcut(x)),
                                 "the ReLU is applied to F(x) before the shortcut is added"),
    "no shortcut": (block_with_forward(lambda self, x: torch.relu(branch(self, x))), "the shortcut is never added"),
    "no ReLU in the branch": (block_with_forward(
        lambda self, x: torch.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))) + self.shortcut(x))),
        "no ReLU between its two convolutions"),
    "returns nothing": (block_with_forward(lambda self, x: None), "forward returned None"),
    "branch output doubled": (block_with_forward(lambda self, x: torch.relu(2 * branch(self, x) + self.shortcut(x))),
                              "off from the reference"),
    "only when channels change": (ProjectsOnlyWhenChannelsChange,
                                  "ResidualBlock(8, 8, 2): equal channels and stride 2: the shortcut must also "
                                  "downsample"),
    "only when channels change, subsampled": (ProjectsOnlyWhenChannelsChangeSubsampling,
                                              "equal channels and stride 2: the shortcut must also downsample"),
    "always projects": (AlwaysProjects, "equal channels and stride 1: the shortcut should be the identity"),
    "only when strided": (ProjectsOnlyWhenStrided, "different channels: the shortcut must project x to 16 channels"),
    "projection without stride": (ProjectionWithoutStride, "your 1x1 projection has stride 1"),
    "projection without BatchNorm": (ProjectionWithoutBatchNorm, "the 1x1 projection has no BatchNorm"),
    "stride on conv2": (StrideOnSecondConv, "the stride is on the second convolution"),
    "batch statistics in eval": (BatchStatisticsAlways, "right in training mode, different in evaluation mode"),
}


@pytest.mark.parametrize("answer", [ResidualBlock, IfInForwardBlock, SequentialBranchBlock])
def test_residual_block_grader_accepts_reasonable_styles(answer):
    result = grade("residual_block", answer)
    assert result.passed and result.points == 2, result.message
    assert "all four combinations" in result.message


@pytest.mark.parametrize("mistake", sorted(BLOCK_MISTAKES))
def test_residual_block_grader_names_each_mistake(mistake):
    answer, expected = BLOCK_MISTAKES[mistake]
    message = failure("residual_block", answer)
    assert expected in message
    assert "relu(bn2(conv2" not in message and "stride != 1 or" not in message     # diagnosis, not the formula


def test_residual_block_grader_tries_every_combination_of_channels_and_stride():
    """A block right for three combinations of (channels equal/different) x (stride 1/2) fails on the fourth."""
    broken_at = {}
    for c_in, c_out, stride in [(8, 8, 1), (8, 16, 1), (8, 8, 2), (8, 16, 2)]:
        def forward(self, x, case=(c_in, c_out, stride)):
            y = ResidualBlock.forward(self, x)
            return -y if (self.conv1.in_channels, self.conv1.out_channels, self.conv1.stride[0]) == case else y
        broken_at[(c_in, c_out, stride)] = failure("residual_block", block_with_forward(forward))
    assert all(f"ResidualBlock({a}, {b}, {s})" in message for (a, b, s), message in broken_at.items())


def test_residual_block_grader_reports_stubs_and_non_modules():
    assert not grade("residual_block", Stub).attempted
    assert "not an nn.Module" in failure("residual_block", lambda *args: torch.zeros(1))


def test_residual_block_hints_come_in_tiers_the_formula_only_in_the_solution():
    from course_utils.checks import solution
    _HINTS_SHOWN.pop("residual_block", None)
    tiers = [hint("residual_block") for _ in range(2)]
    assert "stride == 1" not in tiers[0] and not any("relu(bn2(conv2" in t for t in tiers)
    assert "1/2" in tiers[0] and "last hint" in tiers[1] and "relu(bn2(conv2" in solution("residual_block")


class ConvSE(nn.Module):
    """SE with 1x1 convolutions on the (N, C, 1, 1) squeeze."""

    def __init__(self, channels, reduction):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))


class SequentialSE(nn.Module):
    def __init__(self, channels, reduction):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, channels // reduction),
                                  nn.ReLU(), nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x):
        return x * self.gate(x).view(x.shape[0], -1, 1, 1)


def se_with(squeeze=lambda x: x.mean(dim=(2, 3)), act=torch.relu, squash=torch.sigmoid, combine=lambda x, g: x * g):
    """An SEBlock with one step replaced."""
    def forward(self, x):
        g = squash(self.fc2(act(self.fc1(squeeze(x)))))[:, :, None, None]
        return combine(x, g)
    return type("StudentSE", (SEBlock,), {"forward": forward})


SE_MISTAKES = {
    "max squeeze": (se_with(squeeze=lambda x: x.amax(dim=(2, 3))), "squeezes each channel with its maximum"),
    "sum squeeze": (se_with(squeeze=lambda x: x.sum(dim=(2, 3))), "with its sum over the pixels"),
    "no ReLU": (se_with(act=lambda t: t), "no ReLU between the two layers"),
    "softmax": (se_with(squash=lambda t: torch.softmax(t, dim=1)), "softmax over the channels"),
    "gates only": (se_with(combine=lambda x, g: g.expand_as(x)), "returns the gates themselves"),
    "gates added": (se_with(combine=lambda x, g: x + g), "the gates are added to x"),
    "no sigmoid": (se_with(squash=lambda t: t), "leave the interval (0, 1)"),
    "per pixel": (se_with(combine=lambda x, g: x * torch.sigmoid(x)), "not constant over each channel's pixels"),
    "returns nothing": (se_with(combine=lambda x, g: None), "forward returned None"),
    "no bias": (type("NoBias", (SEBlock,), {"__init__": lambda self, c, r: (nn.Module.__init__(self), setattr(
        self, "fc1", nn.Linear(c, c // r, bias=False)), setattr(self, "fc2", nn.Linear(c // r, c, bias=False)))[0]}),
        "has parameters of shapes"),
}


@pytest.mark.parametrize("answer", [SEBlock, ConvSE, SequentialSE])
def test_se_block_grader_accepts_linear_conv_and_sequential(answer):
    result = grade("se_block", answer)
    assert result.passed, result.message


@pytest.mark.parametrize("mistake", sorted(SE_MISTAKES))
def test_se_block_grader_names_each_mistake(mistake):
    answer, expected = SE_MISTAKES[mistake]
    message = failure("se_block", answer)
    assert expected in message and "sigmoid(fc2(relu" not in message
    assert not grade("se_block", Stub).attempted


@pytest.mark.parametrize("answer", [8208, np.int64(8208), torch.tensor(8208)])
def test_block_parameters_accepts_the_count_as_any_integer(answer):
    assert grade("block_parameters", answer).passed


@pytest.mark.parametrize("answer, expected", [
    (7872, "you left out the shortcut"), (7920, "the projection's 1x1 convolution"),
    (8064, "learned scale and shift"), (8352, "running mean and variance"),
    (8280, "a bias for each convolution"), (8256, "a bias for the two 3x3 convolutions"),
    (10512, "as a 3x3 convolution"), (8208.0, "a count is a whole number"), (12345, "count each layer's weights"),
])
def test_block_parameters_names_each_mistake_without_stating_the_count(answer, expected):
    message = failure("block_parameters", answer)
    assert expected in message and "8,208" not in message and "8208" not in message.replace(str(answer), "")
    assert "2,592" not in message


def test_block_parameters_common_block_is_not_the_one_the_lecture_counts():
    assert block_case() == (12, 24, 2) and count_parameters(ResidualBlock(12, 24, stride=2)) == 8208
    assert not grade("block_parameters", 14528).passed and not grade("block_parameters", None).attempted


@pytest.mark.parametrize("answer", [(6, 24, 6, 8), [6, 24, 6, 8], torch.Size([6, 24, 6, 8]),
                                    tuple(np.array([6, 24, 6, 8]))])
def test_stride2_shape_accepts_tuples_lists_and_sizes(answer):
    assert grade("stride2_shape", answer).passed


@pytest.mark.parametrize("answer, expected", [
    ((6, 24, 5, 8), "rounded down"), ((6, 24, 11, 16), "the stride is ignored"), ((6, 12, 6, 8), "the input's"),
    ((24, 6, 8), "the batch dimension is missing"), ((6, 24, 5, 7), "without padding"),
    ((6, 24, 8, 6), "swapped"), ((6, 24, 22, 32), "never makes the map larger"),
    ((6, 24, 6.5, 8), "whole numbers"), ("6x24x6x8", "write the shape as a tuple"),
    ((6, 24, 7, 9), "count the output rows"),
])
def test_stride2_shape_names_each_mistake_without_stating_the_shape(answer, expected):
    message = failure("stride2_shape", answer)
    assert expected in message and "6, 24, 6, 8" not in message


def test_stride2_shape_draws_the_block_and_batch_per_student_with_an_odd_height():
    seen = set()
    for sid in ("alice", "bob", "carol", "dave", "erin"):
        set_student(sid)
        c_in, c_out, (n, c, h, w) = stride2_case()
        seen.add((c_in, c_out, n, h, w))
        assert c == c_in and h % 2 == 1 and w % 2 == 0 and w != h + 1
        with torch.no_grad():
            truth = tuple(ResidualBlock(c_in, c_out, 2).eval()(torch.zeros(n, c, h, w)).shape)
        assert truth == (n, c_out, (h + 1) // 2, w // 2) and grade("stride2_shape", truth).passed
        assert len(stride2_slips(c_in, c_out, (n, c, h, w))) == 6
        assert "rounded down" in failure("stride2_shape", (n, c_out, h // 2, w // 2))
        assert not grade("stride2_shape", (6, 24, 6, 8)).passed
    set_student("")
    assert len(seen) >= 4


def sheet_answer(name: str):
    """The solution sheet's definition of `name`, with the sheet's augmentation in its namespace."""
    namespace = sheet_namespace()
    namespace["augment"] = transforms.RandomAffine(degrees=10, translate=(0.1, 0.1))
    return namespace[name]


def zero_fraction_of_x() -> float:
    """zero_gamma's right residual fraction for the current student: the share of x that is not positive."""
    return (zero_gamma_input() <= 0).double().mean().item()


@pytest.mark.parametrize("form", [tuple, list, np.array, torch.tensor])
def test_zero_gamma_accepts_the_pair_in_any_container_and_rounded(form):
    q = zero_fraction_of_x()
    assert grade("zero_gamma", form([round(q, 2), 1.0])).passed
    assert grade("zero_gamma", (q, 1)).passed


@pytest.mark.parametrize("answer, expected", [
    (lambda q: (0.0, 1.0), "still acts on x + 0 = x"), (lambda q: (1.0, 1.0), "the shortcut still carries x"),
    (lambda q: (0.5, 1.0), "this x is shifted"), (lambda q: (q, 0.0), "nothing of x reaches"),
    (lambda q: (q, 0.5), "the same value at every entry"), (lambda q: (1.0, q), "swapped"),
    (lambda q: (100 * q, 100.0), "percentages"), (lambda q: "a", "write two numbers"),
    (lambda q: (q,), "write two numbers"), (lambda q: (q, "one"), "should be numbers"),
    (lambda q: (q + 0.2, 1.0), "follow x through the block"),
])
def test_zero_gamma_names_each_mistake_without_stating_the_fractions(answer, expected):
    q = zero_fraction_of_x()
    assert abs(q - 0.5) > 0.1                                          # the common x is shifted
    message = failure("zero_gamma", answer(q))
    assert expected in message and f"{q:.2f}" not in message.replace(f"{answer(q)}", "")
    assert f"{100 * q:.0f} %" not in message
    assert not grade("zero_gamma", None).attempted


def test_zero_gamma_input_is_drawn_per_student_and_the_truth_follows():
    fractions = {}
    for sid in ("", "alice", "bob", "carol"):
        set_student(sid)
        fractions[sid] = zero_fraction_of_x()
        assert grade("zero_gamma", (fractions[sid], 1.0)).passed
    set_student("")
    assert len({round(f, 2) for f in fractions.values()}) >= 3


def test_block_parameters_draws_the_block_per_student_and_names_the_same_mistakes():
    blocks = set()
    for sid in ("alice", "bob", "carol", "dave", "erin"):
        set_student(sid)
        c_in, c_out, stride = block_case()
        blocks.add((c_in, c_out))
        truth = 9 * c_in * c_out + 9 * c_out * c_out + c_in * c_out + 6 * c_out
        assert count_parameters(ResidualBlock(c_in, c_out, stride)) == truth and grade("block_parameters", truth).passed
        assert len(block_slips(c_in, c_out)) == 7 and truth not in block_slips(c_in, c_out)
        assert "you left out the shortcut" in failure("block_parameters", truth - c_in * c_out - 2 * c_out)
    set_student("")
    assert len(blocks) >= 3
    for c_in in (8, 12, 16, 20, 24):                                    # every drawable block names all seven
        assert all(len(block_slips(c_in, k * c_in)) == 7 for k in (2, 3))


def test_sheet_cases_sets_the_student_and_gives_the_checks_sizes():
    cases = sheet_cases("alice")
    assert student() == "alice" and cases["block"] == block_case() and cases["gap_map"] == gap_case()
    assert torch.equal(cases["zero_gamma_x"], zero_gamma_input())
    assert cases["stride2"] == stride2_case()
    common = sheet_cases("")
    assert common["block"] == (12, 24, 2) and common["gap_map"] == (96, 5, 5)
    assert common["stride2"] == (12, 24, (6, 12, 11, 16))


def conv1x1_einsum(x, weight, bias):
    return torch.einsum("oc,nchw->nohw", weight[:, :, 0, 0], x) + bias[:, None, None]


def conv1x1_permute(x, weight, bias):
    return (x.permute(0, 2, 3, 1) @ weight[:, :, 0, 0].T + bias).permute(0, 3, 1, 2)


def conv1x1_linear(x, weight, bias):
    return F.linear(x.movedim(1, -1), weight.flatten(1), bias).movedim(-1, 1)


def conv1x1_flatten(x, weight, bias):
    n, _, h, w = x.shape
    return (weight.flatten(1) @ x.flatten(2)).reshape(n, -1, h, w) + bias.view(-1, 1, 1)


def conv1x1_broadcast(x, weight, bias):
    return (x[:, None] * weight[None]).sum(2) + bias[None, :, None, None]


def conv1x1_numpy(x, weight, bias):
    return np.tensordot(np.asarray(weight)[:, :, 0, 0], np.asarray(x), axes=([1], [1])).transpose(1, 0, 2, 3) \
        + np.asarray(bias)[:, None, None]


def conv1x1_module(x, weight, bias):
    layer = nn.Conv2d(weight.shape[1], weight.shape[0], 1).double()
    with torch.no_grad():
        layer.weight.copy_(weight), layer.bias.copy_(bias)
    return layer(x)


CONV1X1_MISTAKES = {
    "F.conv2d": (lambda x, w, b: F.conv2d(x, w, b), "calls F.conv2d"),
    "nn.Conv2d": (conv1x1_module, "calls F.conv2d"),
    "no bias": (lambda x, w, b: torch.einsum("oc,nchw->nohw", w[:, :, 0, 0], x), "the bias is missing"),
    "transposed": (lambda x, w, b: torch.einsum("co,nchw->nohw", w[:, :, 0, 0], x) + b[:, None, None],
                   "the weight is used transposed"),
    "bias on the width": (lambda x, w, b: torch.einsum("oc,nchw->nohw", w[:, :, 0, 0], x) + b,
                          "the bias is added along the last axis"),
    "reshape without permute": (lambda x, w, b: (x.reshape(-1, x.shape[1]) @ w[:, :, 0, 0].T + b).reshape(
        x.shape[0], -1, *x.shape[2:]), "mixes pixels and channels"),
    "channels last": (lambda x, w, b: x.permute(0, 2, 3, 1) @ w[:, :, 0, 0].T + b, "channels last"),
    "returns nothing": (lambda x, w, b: None, "returned None"),
    "sums over the pixels": (lambda x, w, b: conv1x1_einsum(x, w, b).sum((2, 3), keepdim=True), "has shape"),
}


@pytest.mark.parametrize("answer", [conv1x1_einsum, conv1x1_permute, conv1x1_linear, conv1x1_flatten,
                                    conv1x1_broadcast, conv1x1_numpy, sheet_answer("conv1x1")])
def test_conv1x1_accepts_einsum_matmul_linear_broadcasting_and_numpy(answer):
    result = grade("conv1x1", answer)
    assert result.passed and result.points == 2, result.message


@pytest.mark.parametrize("mistake", sorted(CONV1X1_MISTAKES))
def test_conv1x1_names_each_mistake(mistake):
    answer, expected = CONV1X1_MISTAKES[mistake]
    message = failure("conv1x1", answer)
    assert expected in message and "einsum('oc" not in message


def test_conv1x1_tries_the_edge_sizes_and_draws_the_rest_per_student():
    seen = {}
    for sid in ("", "alice"):
        set_student(sid)
        shapes = []
        spy = lambda x, w, b: shapes.append((*x.shape, w.shape[0])) or conv1x1_einsum(x, w, b)
        assert grade("conv1x1", spy).passed
        seen[sid] = shapes
    set_student("")
    for shapes in seen.values():
        assert (1, 1, 1, 1, 1) in shapes and any(s[1] == 1 for s in shapes) and any(s[4] == 1 for s in shapes)
        assert any(s[2] == s[3] == 1 for s in shapes)
    assert seen[""] != seen["alice"]
    assert not grade("conv1x1", lambda *a: (_ for _ in ()).throw(NotImplementedError())).attempted


@pytest.mark.parametrize("answer", [23040, np.int64(23040), torch.tensor(23040)])
def test_gap_saving_accepts_the_count_as_any_integer(answer):
    assert grade("gap_saving", answer).passed


@pytest.mark.parametrize("answer, expected", [
    (24010, "the flattening head's size"), (24000, "the flattening head's weights"),
    (2304, "both heads scale with 10"), (23050, "a bias counted in one head only"),
    (23030, "a bias counted in one head only"), (23990, "the GAP head takes C numbers"),
    (24.75, "looks like a ratio"), (23040.0, "a count is a whole number"), (12345, "count each head's"),
    ("23040", "a count is a whole number"),
])
def test_gap_saving_names_each_mistake_without_stating_the_count(answer, expected):
    message = failure("gap_saving", answer)
    assert expected in message and "23,040" not in message and "23040" not in message.replace(str(answer), "")
    assert not grade("gap_saving", 44800).passed                       # the report's map, which the lecture prints


def test_gap_saving_draws_the_map_per_student():
    set_student("bob")
    c, h, w = gap_case()
    assert (c, h, w) not in {(128, 6, 6), (96, 5, 5)} and grade("gap_saving", 10 * c * (h * w - 1)).passed
    assert not grade("gap_saving", 23040).passed
    set_student("")


AUGMENT = transforms.RandomAffine(degrees=10, translate=(0.1, 0.1))


class Digits(Dataset):
    def __init__(self, images, labels, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i][None].float() / 255
        return (self.transform(x) if self.transform else x), self.labels[i]


def loader_dataset(images, labels, batch_size, train):
    return DataLoader(Digits(images, labels, AUGMENT if train else None), batch_size=batch_size, shuffle=train)


def loader_collate(images, labels, batch_size, train):
    """TensorDataset of floats; the training batches augmented image by image in collate_fn."""
    data = TensorDataset(images.unsqueeze(1).float().div(255), labels)
    if not train:
        return DataLoader(data, batch_size=batch_size)
    augment_batch = lambda batch: (torch.stack([AUGMENT(x) for x, _ in batch]), torch.stack([y for _, y in batch]))
    return DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=augment_batch)


def loader_compose(images, labels, batch_size, train):
    """A Compose of ConvertImageDtype (uint8 / 255) and the augmentation, with extra draws of its own."""
    torch.rand(3)
    steps = [transforms.Lambda(lambda x: x[None]), transforms.ConvertImageDtype(torch.float32)] + [AUGMENT] * train
    return DataLoader(_Composed(images, labels, transforms.Compose(steps)), batch_size=batch_size, shuffle=train)


class _Composed(Digits):
    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def loader_with(**changes):
    """loader_dataset with one thing changed: scale, channel, augment_eval, augment_train, shuffle, drop_last, dtype."""
    scale, channel = changes.get("scale", lambda x: x.float() / 255), changes.get("channel", True)

    class Changed(Digits):
        def __getitem__(self, i):
            x = scale(self.images[i][None] if channel else self.images[i])
            return (self.transform(x) if self.transform else x), self.labels[i]

    def make(images, labels, batch_size, train):
        transform = AUGMENT if changes.get("augment_eval", train and changes.get("augment_train", True)) else None
        shuffle = changes.get("shuffle", train)
        return DataLoader(Changed(images, labels, transform), batch_size=batch_size, shuffle=shuffle,
                          drop_last=changes.get("drop_last", False))
    return make


def loader_shuffled_once(images, labels, batch_size, train):
    """The data permuted once when the loader is made, then served in that order every epoch."""
    order = torch.randperm(len(labels)) if train else torch.arange(len(labels))
    return DataLoader(Digits(images[order], labels[order], AUGMENT if train else None), batch_size=batch_size)


def loader_list(images, labels, batch_size, train):
    return list(loader_dataset(images, labels, batch_size, train))


def loader_generator(images, labels, batch_size, train):
    return iter(loader_dataset(images, labels, batch_size, train))


def loader_collating(collate):
    """loader_dataset whose batches are collate(default batch)."""
    return lambda images, labels, batch_size, train: DataLoader(
        Digits(images, labels, AUGMENT if train else None), batch_size=batch_size, shuffle=train,
        collate_fn=lambda batch: collate(default_collate(batch)))


LOADER_MISTAKES = {
    "drop_last": (loader_with(drop_last=True), "the last incomplete batch of"),
    "no channel": (loader_with(channel=False), "without the channel dimension"),
    "bytes": (loader_with(scale=lambda x: x, augment_train=False), "x is uint8"),
    "not scaled": (loader_with(scale=lambda x: x.float(), augment_train=False), "still 0 to 255"),
    "normalised": (loader_with(scale=lambda x: (x.float() / 255 - 0.1307) / 0.3081), "without normalising"),
    "float64": (loader_with(scale=lambda x: x.double() / 255), "x is float64"),
    "eval shuffled": (loader_with(shuffle=True), "evaluation needs no shuffling"),
    "train in order": (loader_with(shuffle=False), "in the stored order: shuffle them"),
    "augments in eval": (loader_with(augment_eval=True), "augmentation is for training only"),
    "never augments": (loader_with(augment_train=False), "pass each image through augment"),
    "shuffled once": (loader_shuffled_once, "shuffled once, not at every epoch"),
    "a list of batches": (loader_list, "returned a list, not a DataLoader"),
    "a generator": (loader_generator, "not a DataLoader"),
    "returns nothing": (lambda *args: None, "returned None"),
    "float labels": (loader_collating(lambda b: (b[0], b[1].float())), "cross-entropy takes int64"),
    "images only": (loader_collating(lambda b: b[0]), "each batch should be a pair"),
}


@pytest.mark.parametrize("answer", [loader_dataset, loader_collate, loader_compose, sheet_answer("make_loader")])
def test_make_loader_accepts_a_dataset_a_collate_fn_and_a_compose(answer):
    result = grade("make_loader", answer)
    assert result.passed and result.points == 2, result.message


@pytest.mark.parametrize("mistake", sorted(LOADER_MISTAKES))
def test_make_loader_names_each_mistake(mistake):
    answer, expected = LOADER_MISTAKES[mistake]
    message = failure("make_loader", answer)
    assert expected in message and "shuffle=train)" not in message


def test_make_loader_leaves_the_global_random_stream_alone_and_passes_through_the_grader():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    assert grade("make_loader", loader_dataset).passed and torch.equal(torch.rand(1), expected)
    for answer in (loader_dataset, LOADER_MISTAKES["shuffled once"][0]):
        replayed, direct = replay("make_loader", record("make_loader", answer)), grade("make_loader", answer)
        assert (replayed.passed, replayed.message) == (direct.passed, direct.message)


def test_make_loader_cases_keep_a_last_incomplete_batch_and_one_larger_than_the_data():
    for sid in ("", "alice", "bob"):
        set_student(sid)
        cases = loader_cases()
        assert all(n % size for n, size, _, _ in cases) and any(size > n for n, size, _, _ in cases)
        assert any(n % size == 1 for n, size, _, _ in cases)
    set_student("")


def fixed_forward_sum_first(self, x):
    out = torch.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out)) + self.shortcut(x)
    return torch.relu(out)


def fixed_forward_functional(self, x):
    return F.relu(self.shortcut(x) + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def test_fix_block_sheet_gives_a_buggy_block_and_its_fix_passes():
    sheet = sheet_namespace()
    assert "forward returned None" in failure("fix_block", sheet["BuggyBlock"])
    for fixed in (sheet["FixedBlock"], block_with_forward(fixed_forward_sum_first),
                  block_with_forward(fixed_forward_functional)):
        result = grade("fix_block", fixed)
        assert result.passed and result.points == 2, result.message


def test_fix_block_names_each_bug_left():
    def returns_but_keeps_both_bugs(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return self.bn2(torch.relu(self.conv2(out) + self.shortcut(x)))

    def adds_before_bn2(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out) + self.shortcut(x)))

    def relu_before_bn2(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return self.bn2(torch.relu(self.conv2(out))) + self.shortcut(x)

    expected = {returns_but_keeps_both_bugs: "the ReLU comes before bn2", adds_before_bn2: "added before bn2",
                relu_before_bn2: "has negative values"}
    for forward, why in expected.items():
        message = failure("fix_block", block_with_forward(forward))
        assert why in message and "FixedBlock(" in message and "relu(bn2(conv2" not in message


def bn_backward_cs231n(dout, x, gamma, beta, eps=1e-5):
    """The compact formula, in torch."""
    n = x.shape[0]
    inv_std = 1 / torch.sqrt(x.var(0, unbiased=False) + eps)
    xhat = (x - x.mean(0)) * inv_std
    dxhat = dout * gamma
    dx = inv_std / n * (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    return dx, (dout * xhat).sum(0), dout.sum(0)


def bn_backward_numpy(dout, x, gamma, beta, eps=1e-5):
    """Stage by stage through the graph, in NumPy."""
    dout, x, gamma = (np.asarray(t) for t in (dout, x, gamma))
    n = x.shape[0]
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc ** 2).mean(axis=0)
    std = np.sqrt(var + eps)
    xhat = xc / std
    dxhat = dout * gamma
    dvar = (dxhat * xc * -0.5 * std ** -3).sum(axis=0)
    dmu = (-dxhat / std).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)
    dx = dxhat / std + dvar * 2 * xc / n + dmu / n
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def bn_backward_list(dout, x, gamma, beta, eps=1e-5):
    """Returns a list, computes xhat with torch.var_mean."""
    var, mu = torch.var_mean(x, dim=0, unbiased=False)
    xhat = (x - mu) / (var + eps).sqrt()
    g = dout * gamma
    return [((g - g.mean(0)) - xhat * (g * xhat).mean(0)) / (var + eps).sqrt(), (dout * xhat).sum(0), dout.sum(0)]


@pytest.mark.parametrize("answer", [bn_backward_cs231n, bn_backward_numpy, bn_backward_list])
def test_batchnorm_backward_accepts_torch_numpy_and_lists(answer):
    result = grade("batchnorm_backward", answer)
    assert result.passed and "below 1e-7" in result.message, result.message


def with_dx(dx_of):
    """bn_backward_cs231n with dx replaced by dx_of(dout, x, gamma, eps)."""
    def student(dout, x, gamma, beta, eps=1e-5):
        _, dgamma, dbeta = bn_backward_cs231n(dout, x, gamma, beta, eps)
        return dx_of(dout, x, gamma, eps), dgamma, dbeta
    return student


std_of = lambda x, eps: torch.sqrt(x.var(0, unbiased=False) + eps)
BN_MISTAKES = {
    "constants": (with_dx(lambda dout, x, gamma, eps: dout * gamma / std_of(x, eps)), "treated as constants", 1),
    "unbiased": (with_dx(lambda dout, x, gamma, eps: _unbiased_dx(dout, x, gamma, eps)), "the unbiased variance", 1),
    "no eps": (with_dx(lambda dout, x, gamma, eps: bn_backward_cs231n(dout, x, gamma, None, eps=0.0)[0]),
               "no eps under the square root", 1),
    "no gamma": (with_dx(lambda dout, x, gamma, eps: bn_backward_cs231n(dout, x, torch.ones_like(gamma), None)[0]),
                 "gamma left out", 1),
    "mean path only": (with_dx(lambda dout, x, gamma, eps: (dout - dout.mean(0)) * gamma / std_of(x, eps)),
                       "only the gradient through the mean", 1),
    "off by a bit": (with_dx(lambda dout, x, gamma, eps: bn_backward_cs231n(dout, x, gamma, None)[0] * (1 + 1e-5)),
                     "relative error", 1),
    "swapped": (lambda *a: (lambda dx, dg, db: (dx, db, dg))(*bn_backward_cs231n(*a)), "swapped", 0),
    "dgamma with x": (lambda dout, x, gamma, beta: (bn_backward_cs231n(dout, x, gamma, beta)[0], (dout * x).sum(0),
                                                    dout.sum(0)), "dgamma multiplies dout by x", 0),
    "wrong axis": (lambda dout, x, gamma, beta: (bn_backward_cs231n(dout, x, gamma, beta)[0], (dout * x).sum(1),
                                                 dout.sum(1)), "sum over the batch axis 0", 0),
    "float32": (lambda *a: tuple(t.float() for t in bn_backward_cs231n(*a)), "float32", 0),
    "autograd": (lambda dout, x, gamma, beta: _autograd_student(dout, x, gamma, beta), "Tensor.backward()", 0),
    "one tensor": (lambda *a: bn_backward_cs231n(*a)[0], "return (dx, dgamma, dbeta)", 0),
}


def _unbiased_dx(dout, x, gamma, eps):
    """dx by hand for a BatchNorm that normalises with the unbiased variance."""
    n, xc = x.shape[0], x - x.mean(0)
    std, dxhat = torch.sqrt(x.var(0, unbiased=True) + eps), dout * gamma
    return (dxhat - dxhat.mean(0)) / std - xc * (dxhat * xc).sum(0) / ((n - 1) * std ** 3)


def _autograd_student(dout, x, gamma, beta):
    leaves = [t.clone().requires_grad_() for t in (x, gamma, beta)]
    with torch.enable_grad():
        y = leaves[1] * (leaves[0] - leaves[0].mean(0)) / torch.sqrt(leaves[0].var(0, unbiased=False) + 1e-5)
        (y + leaves[2]).backward(dout)
    return tuple(t.grad for t in leaves)


@pytest.mark.parametrize("mistake", sorted(BN_MISTAKES))
def test_batchnorm_backward_names_each_mistake(mistake):
    answer, expected, points = BN_MISTAKES[mistake]
    result = grade("batchnorm_backward", answer)
    assert not result.passed and expected in result.message, result.message
    assert result.points == points
    assert "N * dxhat" not in result.message


def test_notebook_06_has_six_checked_questions_in_four_kinds_and_a_written_one():
    questions = questions_for("06_resnet_upgrade")
    assert len(questions) >= 6 and len({q.kind for q in questions}) >= 4
    assert all(2 <= len(q.hints) <= 3 for q in questions)
    written = written_for("06_resnet_upgrade")
    assert [w.id for w in written] == ["identity_path"] and grade("identity_path", None).written


def test_train_or_load_resnet_trains_once_then_loads_the_same_network(mnist, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNN_COURSE_CACHE", str(tmp_path))
    small = mnist.with_validation(200).subset(256, 100, 200)
    config = TrainConfig("FastResNet-4-8", optimizer="Adadelta", lr=1.0, lr_gamma=0.7, batch_size=64, epochs=1)
    make = lambda: FastResNet((4, 8))
    model, history, loaded = train_or_load_resnet(config, make, small, torch.device("cpu"))
    assert not loaded and len(history.val_acc) == 1 and len(list(tmp_path.glob("FastResNet-4-8-*.pt"))) == 1
    again, history_again, loaded_again = train_or_load_resnet(config, make, small, torch.device("cpu"))
    assert loaded_again and history_again == history and not again.training
    x = small.X_val[:8]
    torch.testing.assert_close(again(x), model(x))
    other, _, loaded_other = train_or_load_resnet(TrainConfig("FastResNet-4-8", optimizer="Adadelta", lr=1.0,
                                                              batch_size=64, epochs=1, seed=2), make, small)
    assert not loaded_other and len(list(tmp_path.glob("FastResNet-4-8-*.pt"))) == 2
    assert "test accuracy" not in capsys.readouterr().out
