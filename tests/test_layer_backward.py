"""Sheet 04's conv_layer_backward: right answers in several styles pass; each class of mistake gets a true message."""
import pytest
import torch
import torch.nn.functional as F

from course_utils.checks import check


def with_conv2d(x, weight, grad_out):
    k = weight.shape[-1]
    grad_x = F.conv2d(F.pad(grad_out, (k - 1,) * 4), weight.flip(2, 3).transpose(0, 1))
    grad_weight = F.conv2d(x.transpose(0, 1), grad_out.transpose(0, 1)).transpose(0, 1)
    return grad_x, grad_weight, grad_out.sum((0, 2, 3))


def with_einsum(x, weight, grad_out):
    """im2col: the patches as a matrix, the gradients as matrix products, then fold."""
    n, c_in, h, w = x.shape
    c_out, _, k, _ = weight.shape
    cols = F.unfold(x, k)                                              # (N, C_in*k*k, L)
    g = grad_out.flatten(2)                                            # (N, C_out, L)
    grad_weight = torch.einsum("nol,nql->oq", g, cols).reshape(weight.shape)
    grad_cols = torch.einsum("oq,nol->nql", weight.reshape(c_out, -1), g)
    return F.fold(grad_cols, (h, w), k), grad_weight, g.sum((0, 2))


def with_loops(x, weight, grad_out):
    grad_x, grad_weight = torch.zeros_like(x), torch.zeros_like(weight)
    k = weight.shape[-1]
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            patch, g = x[:, :, i:i + k, j:j + k], grad_out[:, :, i, j]          # (N, C_in, k, k), (N, C_out)
            grad_weight += torch.einsum("no,nchw->ochw", g, patch)
            grad_x[:, :, i:i + k, j:j + k] += torch.einsum("no,ochw->nchw", g, weight)
    return grad_x, grad_weight, grad_out.sum((0, 2, 3))


@pytest.mark.parametrize("answer", [with_conv2d, with_einsum, with_loops])
def test_right_answers_in_several_styles_pass(answer):
    result = check("conv_layer_backward", answer)
    assert result.passed and result.points == 2, result.message


def per_example_weight(x, weight, grad_out):
    gx, _, gb = with_conv2d(x, weight, grad_out)
    return gx, torch.stack([with_conv2d(x[i:i + 1], weight, grad_out[i:i + 1])[1] for i in range(len(x))]), gb


def first_example_weight(x, weight, grad_out):
    gx, _, gb = with_conv2d(x, weight, grad_out)
    return gx, with_conv2d(x[:1], weight, grad_out[:1])[1], gb


def autograd(x, weight, grad_out):
    leaves = [x.requires_grad_(), weight.requires_grad_()]
    F.conv2d(*leaves).backward(grad_out)
    return leaves[0].grad, leaves[1].grad, grad_out.sum((0, 2, 3))


def transposed_conv(x, weight, grad_out):
    _, gw, gb = with_conv2d(x, weight, grad_out)
    return F.conv_transpose2d(grad_out, weight), gw, gb


@pytest.mark.parametrize("answer, says", [
    (lambda x, w, g: (F.conv2d(F.pad(g, (w.shape[-1] - 1,) * 4), w.transpose(0, 1)),) + with_conv2d(x, w, g)[1:],
     "turned by 180°"),
    (per_example_weight, "one gradient per example"),
    (first_example_weight, "first example's gradient only"),
    (lambda x, w, g: with_conv2d(x, w, g)[:2] + (g.sum((2, 3)),), "grad_bias has shape"),
    (lambda x, w, g: (with_conv2d(x, w, g)[0], with_conv2d(x, w, g)[1].transpose(0, 1), g.sum((0, 2, 3))),
     "axes swapped"),
    (lambda x, w, g: tuple(t.float() for t in with_conv2d(x, w, g)), "float32"),
    (lambda x, w, g: with_conv2d(x, w, g)[:2], "return (grad_x, grad_weight, grad_bias)"),
    (autograd, "autograd"),
    (transposed_conv, "conv_transpose2d"),
])
def test_each_mistake_gets_a_true_message(answer, says):
    result = check("conv_layer_backward", answer)
    assert not result.passed and says in result.message, result.message
