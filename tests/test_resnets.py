"""The ResNets of notebook 06: the report's network against its Appendix C, shapes and costs, shortcuts,
squeeze-and-excitation, batch augmentation, and the graders of its exercises."""
import pytest
import torch
from torch import nn

from course_utils.checks import grade
from course_utils.cost import count_macs, count_parameters, layer_costs
from course_utils.data import MEAN, STD
from course_utils.models import TwoLayerCNN
from course_utils.resnets import (Augment, FastResNet, ReportBlock, ReportResNet, ResidualBlock, SEBlock,
                                  random_affine, sgd_cosine)
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


def test_graders_accept_the_reference_and_reject_mistakes():
    assert grade("residual_block", ResidualBlock).passed
    assert grade("se_block", SEBlock).passed

    class NoFinalReLU(ResidualBlock):
        def forward(self, x):
            return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + self.shortcut(x)

    class MaxSqueeze(SEBlock):
        def forward(self, x):
            return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.amax(dim=(2, 3))))))[:, :, None, None]

    class Stub(nn.Module):
        def __init__(self, *args):
            super().__init__()
            raise NotImplementedError()

    class ProjectsOnlyWhenChannelsChange(ResidualBlock):
        def __init__(self, in_channels, out_channels, stride=1):
            super().__init__(in_channels, out_channels, stride)
            if in_channels == out_channels:
                self.shortcut = nn.Identity()

    result = grade("residual_block", NoFinalReLU)
    assert not result.passed and "ReLU" in result.message
    result = grade("residual_block", ProjectsOnlyWhenChannelsChange)
    assert not result.passed and "ResidualBlock(8, 8, 2)" in result.message and "stride != 1" in result.message
    result = grade("se_block", MaxSqueeze)
    assert not result.passed and "mean" in result.message
    assert not grade("se_block", Stub).attempted
    assert not grade("residual_block", Stub).attempted
