"""Notebook 06 §3: initialisation variances, activations, the residual layers and the deep-stack helpers."""
import math

import pytest
import torch
from torch import nn

from course_utils.deep_stacks import (StackLayer, conv_stack, dead_fraction, first_layer_grad_norm, initialise,
                                      train_steps)


@pytest.mark.parametrize("scheme, variance", [("default", lambda fi, fo: 1 / (3 * fi)),
                                               ("xavier", lambda fi, fo: 2 / (fi + fo)),
                                               ("he", lambda fi, fo: 2 / fi)])
def test_initialise_draws_the_documented_variance(scheme, variance):
    torch.manual_seed(0)
    conv = initialise(nn.Sequential(nn.Conv2d(64, 32, 3)), scheme)[0]     # fan_in 576, fan_out 288
    assert conv.weight.var().item() == pytest.approx(variance(576, 288), rel=0.05)
    assert (conv.bias.abs().max().item() == 0) == (scheme != "default")
    with pytest.raises(ValueError, match="init must be"):
        initialise(conv, "glorot")


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


def test_train_steps_lowers_the_loss_of_a_small_stack(mnist):
    torch.manual_seed(0)
    losses = train_steps(conv_stack(2, batchnorm=True, init="he"), mnist.X_train, mnist.y_train, 60, 64)
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < 0.6 * math.log(10)
    with pytest.raises(ValueError, match="need"):
        train_steps(conv_stack(1), mnist.X_train[:100], mnist.y_train[:100], 2, 64)
