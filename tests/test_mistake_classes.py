"""Four classes of mistake the checks must judge right: the global random stream, the layer kind an
exercise fixes, numerical stability inside a composite answer, and edge sizes (a 1x1 kernel)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils.checks import grade
from test_variants import conv2d_loops


def test_a_correct_train_step_that_draws_extra_random_numbers_passes():
    def train_step(model, optimizer, X, y):
        torch.rand(3)                                    # e.g. a noise term, or a DataLoader's base seed
        for xb, yb in DataLoader(TensorDataset(X, y), batch_size=len(X)):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
        return loss.item()
    result = grade("train_step", train_step)
    assert result.passed, result.message


def test_a_train_step_that_is_wrong_still_fails_with_extra_draws():
    def train_step(model, optimizer, X, y):
        torch.rand(3)
        loss = F.cross_entropy(model(X), y)              # gradients never cleared
        loss.backward()
        optimizer.step()
        return loss.item()
    result = grade("train_step", train_step)
    assert not result.passed and "zero_grad" in result.message


def two_layer_cnn(first: nn.Module, second: nn.Module, in_channels: int, image_size: int) -> nn.Sequential:
    side = (image_size - 4) // 2
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                         first, nn.Flatten(), nn.Linear(16 * side * side, 64), nn.ReLU(), second, nn.Linear(64, 10))


def test_channel_dropout_or_another_rate_fails_where_element_wise_dropout_is_asked():
    assert grade("cnn_for_input", lambda c, n: two_layer_cnn(nn.Dropout(0.25), nn.Dropout(0.5), c, n)).passed
    channel = grade("cnn_for_input", lambda c, n: two_layer_cnn(nn.Dropout2d(0.25), nn.Dropout(0.5), c, n))
    assert not channel.passed and "whole channels" in channel.message
    rate = grade("cnn_for_input", lambda c, n: two_layer_cnn(nn.Dropout(0.5), nn.Dropout(0.5), c, n))
    assert not rate.passed and "0.25" in rate.message


def weighted_step_from(softmax):
    def weighted_step(W, b, X, y, w, lr):
        P, wy = softmax(X @ W.T + b), w[y][:, None]
        dz = wy * (P - F.one_hot(y, W.shape[0]).to(P.dtype)) / wy.sum()
        return W - lr * dz.T @ X, b - lr * dz.sum(0)
    return weighted_step


def test_a_softmax_regression_step_without_the_max_shift_fails():
    shifted = lambda z: (z - z.max(1, keepdim=True).values).exp() / (z - z.max(1, keepdim=True).values).exp().sum(1, keepdim=True)
    unshifted = lambda z: z.exp() / z.exp().sum(1, keepdim=True)
    assert grade("weighted_step", weighted_step_from(shifted)).passed
    result = grade("weighted_step", weighted_step_from(unshifted))
    assert not result.passed and "overflows" in result.message and "logits near 740" in result.message


def test_a_padding_bug_at_kernel_size_1_fails():
    def same_style_padding(image, kernel, stride=1, padding=0):
        k = kernel.shape[0]
        return conv2d_loops(image, kernel, stride, k // 2 if padding else 0)   # right for every k > 1 case here
    result = grade("conv2d_loops", same_style_padding)
    assert not result.passed and "kernel 1x1" in result.message and "padding=1" in result.message


def test_a_same_conv_that_pads_by_one_fails_at_kernel_size_1():
    def same_conv(image, kernel):
        return conv2d_loops(image, kernel, 1, max(kernel.shape[0] // 2, 1))
    result = grade("same_conv", same_conv)
    assert not result.passed and "kernel 1x1" in result.message
