"""Sheet 01's maxpool_backward: right answers in several styles pass; each class of mistake gets a true message."""
import pytest
import torch
import torch.nn.functional as F

from course_utils.checks import check


def windows(x):
    n, c, h, w = x.shape
    return x[..., :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5)


def to_image(per_window, x):
    """Per-window values (N, C, h, w, 4) back in x's layout; pixels in no window get 0."""
    n, c, h, w = per_window.shape[:4]
    grad = torch.zeros_like(x)
    grad[..., :2 * h, :2 * w] = per_window.reshape(n, c, h, w, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * h, 2 * w)
    return grad


def reshape_argmax(x, grad_out):
    """Vectorised: argmax per window (the first maximum), one-hot, back to the image layout."""
    n, c, h, w = x.shape
    win = windows(x).reshape(n, c, h // 2, w // 2, 4)
    onehot = F.one_hot(win.argmax(-1), 4).to(grad_out.dtype) * grad_out[..., None]
    return to_image(onehot, x)


def loops_last_max(x, grad_out):
    """Loops over windows; ties go to the last maximum (a different, equally valid rule)."""
    grad = torch.zeros_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(grad_out.shape[2]):
                for j in range(grad_out.shape[3]):
                    window = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].flatten()
                    best = max(range(4), key=lambda k: (window[k].item(), k))
                    grad[n, c, 2 * i + best // 2, 2 * j + best % 2] = grad_out[n, c, i, j]
    return grad


def unfold_fold(x, grad_out):
    cols = F.unfold(x, 2, stride=2)                                   # (N, C*4, L)
    n, c = x.shape[:2]
    cols = cols.view(n, c, 4, -1)
    picked = F.one_hot(cols.argmax(2), 4).permute(0, 1, 3, 2) * grad_out.flatten(2)[:, :, None]
    return F.fold(picked.reshape(n, c * 4, -1), x.shape[-2:], 2, stride=2)


def mask_all_ties(x, grad_out):
    n, c, h, w = x.shape
    win = windows(x).reshape(n, c, h // 2, w // 2, 4)
    mask = (win == win.amax(-1, keepdim=True)).to(x.dtype) * grad_out[..., None]
    return to_image(mask, x)


def average(x, grad_out):
    grad = torch.zeros_like(x)
    h, w = grad_out.shape[-2:]
    grad[..., :2 * h, :2 * w] = grad_out.repeat_interleave(2, -2).repeat_interleave(2, -1) / 4
    return grad


def repeat_only(x, grad_out):
    return (grad_out.repeat_interleave(2, -2).repeat_interleave(2, -1)
            * (x[..., :grad_out.shape[-2] * 2, :grad_out.shape[-1] * 2] == F.interpolate(
                windows(x).amax((-1, -2)), scale_factor=2)))


def autograd(x, grad_out):
    x = x.clone().requires_grad_()
    F.max_pool2d(x, 2).backward(grad_out)
    return x.grad


def with_indices(x, grad_out):
    _, where = F.max_pool2d(x, 2, return_indices=True)
    return torch.zeros_like(x).flatten(2).scatter_(2, where.flatten(2), grad_out.flatten(2)).view(x.shape)


@pytest.mark.parametrize("answer", [reshape_argmax, loops_last_max, unfold_fold])
def test_right_answers_in_several_styles_pass(answer):
    result = check("maxpool_backward", answer)
    assert result.passed and result.points == 2, result.message


@pytest.mark.parametrize("answer, says", [
    (mask_all_ties, "with a tie, every maximum got"),
    (average, "average pooling's backward"),
    (repeat_only, "not the input's"),
    (autograd, "Tensor.backward (autograd)"),
    (with_indices, "F.max_pool2d"),
    (lambda x, g: torch.zeros_like(x), "grad_x differs"),
])
def test_each_mistake_gets_a_true_message(answer, says):
    result = check("maxpool_backward", answer)
    assert not result.passed and says in result.message, result.message
