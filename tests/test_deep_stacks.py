"""Notebook 06 §3: initialisation variances, activations, the residual layers and the deep-stack helpers."""
import math

import pytest
import torch
from torch import nn

from course_utils.compare import guard, verdict
from course_utils.deep_stacks import (INITS, StackLayer, conv_stack, dead_fraction, final_loss, first_layer_grad_norm,
                                      initialise, layer_factor, layer_statistics, train_at_best_rate, train_seeds,
                                      train_steps)
from course_utils.device import seed_everything


@pytest.mark.parametrize("scheme, variance", [("default", lambda fi, fo: 1 / (3 * fi)),
                                               ("xavier", lambda fi, fo: 2 / (fi + fo)),
                                               ("he", lambda fi, fo: 2 / fi)])
def test_initialise_draws_the_documented_variance(scheme, variance):
    torch.manual_seed(0)
    conv = initialise(nn.Sequential(nn.Conv2d(64, 32, 3)), scheme)[0]     # fan_in 576, fan_out 288
    assert conv.weight.var().item() == pytest.approx(variance(576, 288), rel=0.05)
    assert conv.bias.abs().max().item() == 0                                # every scheme zeroes the biases
    with pytest.raises(ValueError, match="init must be"):
        initialise(conv, "glorot")


def test_zero_bias_stacks_lose_a_factor_6_and_2_of_variance_per_relu_layer_against_he(mnist):
    """Var W = 1/(3n), 1/n (equal fans) and 2/n: per ReLU layer E[x²] shrinks 1/6 and 1/2 as fast as He's."""
    X, y = mnist.X_train[:256], mnist.y_train[:256]
    for seed in (0, 1):
        stats = {}
        for scheme in INITS:
            seed_everything(seed)
            stats[scheme] = layer_statistics(conv_stack(20, init=scheme), X, y)
            assert len(stats[scheme]["std"]) == len(stats[scheme]["grad_norm"]) == 21     # stem + 20 layers
        factor = {scheme: layer_factor(s["mean_square"][1:]) for scheme, s in stats.items()}
        assert factor["default"] / factor["he"] == pytest.approx(1 / 6, rel=0.2)
        assert factor["xavier"] / factor["he"] == pytest.approx(1 / 2, rel=0.05)
        assert 0.5 < factor["he"] < 1.2
        final_std = [stats[scheme]["std"][-1] for scheme in ("default", "xavier", "he")]
        assert final_std == sorted(final_std)
        assert stats["default"]["grad_norm"][0] < 1e-3 * stats["he"]["grad_norm"][0]


def test_he_initialisation_keeps_the_gradient_of_a_deep_plain_stack(mnist):
    X, y = mnist.X_train[:64], mnist.y_train[:64]
    torch.manual_seed(0)
    default = first_layer_grad_norm(conv_stack(30), X, y)
    he = first_layer_grad_norm(conv_stack(30, init="he"), X, y)
    residual = first_layer_grad_norm(conv_stack(30, residual="pre"), X, y)
    assert he > 1e6 * default and residual > 1e6 * default


def test_residual_layers_with_a_silent_branch():
    x = torch.randn(2, 4, 5, 5)
    for residual, expected in [("pre", x), ("post", torch.relu(x)), (None, torch.zeros_like(x))]:
        layer = StackLayer(4, "relu", batchnorm=False, residual=residual)
        nn.init.zeros_(layer.conv.weight), nn.init.zeros_(layer.conv.bias)
        torch.testing.assert_close(layer(x), expected)


def test_a_relu_with_a_large_negative_bias_is_dead_and_a_leaky_one_is_not():
    x = torch.randn(16, 1, 28, 28)
    for activation, dead, has_grad in [("relu", 1.0, False), ("leaky_relu", 0.0, True)]:
        model = conv_stack(1, activation=activation, channels=4)
        nn.init.constant_(model[0].bias, -100.0)                    # every stem pre-activation < 0
        assert dead_fraction(model[:3], x) == dead                  # stem conv, max-pool, activation
        first_layer_grad_norm(model, x, torch.zeros(16, dtype=torch.long))
        assert (model[0].weight.grad.abs().sum() > 0) == has_grad


def test_the_best_rate_is_the_one_with_the_lowest_training_loss_and_never_a_diverged_one(mnist):
    make = lambda: conv_stack(3, init="he")
    rate, losses, model = train_at_best_rate(make, mnist.X_train, mnist.y_train, 30, (1e-4, 0.03, 50.0))
    assert rate == 0.03 and len(losses) == 30 and isinstance(model, nn.Sequential)
    seed_everything(1)
    assert final_loss(train_steps(make(), mnist.X_train, mnist.y_train, 30, lr=0.03)) == final_loss(losses)
    assert final_loss([4.0, 3.0, 2.0, 1.0, 0.0]) == 0.0 and final_loss(list(range(10))) == 8.5


def test_train_steps_lowers_the_loss_of_a_small_stack(mnist):
    torch.manual_seed(0)
    losses = train_steps(conv_stack(2, batchnorm=True, init="he"), mnist.X_train, mnist.y_train, 60, 64)
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.6 * math.log(10)
    assert len(train_steps(conv_stack(1), mnist.X_train[:100], mnist.y_train[:100], 5, 64)) == 5   # 3 passes
    with pytest.raises(ValueError, match="steps >= 1"):
        train_steps(conv_stack(1), mnist.X_train[:100], mnist.y_train[:100], 0, 64)


def test_train_seeds_gives_one_run_per_seed_and_the_guard_refuses_a_stack_that_did_not_train(mnist):
    X_val, y_val = mnist.X_test[:300], mnist.y_test[:300]
    learns = lambda: conv_stack(2, batchnorm=True, init="he")
    curves, arm = train_seeds("2 layers", learns, mnist.X_train, mnist.y_train, X_val, y_val, 40, 0.05, (1, 2))
    assert [len(c) for c in curves] == [40, 40] and curves[0] != curves[1]
    assert arm.train_loss == tuple(final_loss(c) for c in curves) and guard(arm) and min(arm.acc) > 0.5
    stuck = lambda: conv_stack(10, activation="sigmoid", init="default")
    _, flat = train_seeds("sigmoid", stuck, mnist.X_train, mnist.y_train, X_val, y_val, 5, 0.01, (1, 2))
    assert not guard(flat) and verdict(arm, flat, metric="train_loss").endswith("no comparison.")
