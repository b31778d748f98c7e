"""Sheet 01's learn_kernel: right answers in several styles pass; each class of mistake gets a true message."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks import check


def descend(images, targets, k, steps=200, lr=0.3, flip=False, padding=None, with_bias=True, zero_grad=True):
    """Gradient descent on the layer's weight (and bias) with the slips a student makes, switched on by name."""
    weight = torch.zeros(1, 1, k, k, requires_grad=True)
    bias = torch.zeros(1, requires_grad=with_bias)
    optimizer = torch.optim.SGD([weight, bias] if with_bias else [weight], lr=lr)
    for _ in range(steps):
        w = weight.flip(2, 3) if flip else weight
        loss = F.mse_loss(F.conv2d(images, w, bias, padding=k // 2 if padding is None else padding), targets)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return weight.detach()[0, 0], bias.detach()


def module_adam(images, targets, kernel_size):
    layer = nn.Conv2d(1, 1, kernel_size, padding="same")
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
    for _ in range(800):
        optimizer.zero_grad()
        F.mse_loss(layer(images), targets).backward()
        optimizer.step()
    return layer.weight.detach(), layer.bias.detach()         # (1, 1, k, k) and a 1-element tensor


def least_squares(images, targets, k):
    patches = F.unfold(images, k, padding=k // 2).transpose(1, 2).reshape(-1, k * k)
    design = torch.cat([patches, torch.ones(len(patches), 1)], 1)
    solution = torch.linalg.lstsq(design, targets.reshape(-1, 1)).solution[:, 0]
    return solution[:-1].reshape(k, k).numpy(), float(solution[-1])


def extra_random_draw(images, targets, k):
    torch.randn(5)                                            # a draw from the global stream changes nothing
    return descend(images, targets, k)


@pytest.mark.parametrize("answer", [descend, module_adam, least_squares, extra_random_draw])
def test_right_answers_in_several_styles_pass(answer):
    result = check("learn_kernel", answer)
    assert result.passed and result.points == 2, result.message


@pytest.mark.parametrize("answer, says, points", [
    (lambda x, y, k: descend(x, y, k, flip=True), "turned by 180°", 0),
    (lambda x, y, k: descend(x, y, k, with_bias=False), "the bias is 0", 1),
    (lambda x, y, k: descend(x, y, k, padding=1), "kernel_size=1) raised", 0),
    (lambda x, y, k: descend(x, y, k, zero_grad=False), "not converged", 0),
    (lambda x, y, k: descend(x, y, k, steps=3), "not converged", 0),
    (lambda x, y, k: descend(x, y, k, lr=2.0), "diverged", 0),
    (lambda x, y, k: descend(x, y, k)[0], "return the pair (kernel, bias)", 0),
    (lambda x, y, k: (torch.zeros(k + 1, k + 1), 0.0), "expected (3, 3)", 0),
])
def test_each_mistake_gets_a_true_message(answer, says, points):
    result = check("learn_kernel", answer)
    assert not result.passed and says in result.message and result.points == points, result.message


def test_a_padding_slip_names_the_case_it_failed_on():
    message = check("learn_kernel", lambda x, y, k: descend(x, y, k, padding=1)).message
    assert "kernel_size=1" in message and "k // 2" in message
