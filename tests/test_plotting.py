"""Per-class precision and recall from a confusion matrix, against hand-counted values; legible digit grids."""
import matplotlib
import pytest
import torch

from course_utils.plotting import (NOTEBOOK_WIDTH_PX, confusion_matrix, plot_digits, plot_precision_recall,
                                   precision_recall)


def test_precision_recall_by_hand():
    y_true = torch.tensor([0, 0, 0, 1, 1, 2])
    y_pred = torch.tensor([0, 0, 1, 1, 0, 2])     # two 0s right, a 0 called 1, a 1 right, a 1 called 0
    precision, recall = precision_recall(confusion_matrix(y_true, y_pred, num_classes=3))
    assert precision.tolist() == pytest.approx([2 / 3, 1 / 2, 1])     # predicted 0: three, two of them 0
    assert recall.tolist() == pytest.approx([2 / 3, 1 / 2, 1])        # true 0: three, two found


def test_a_class_never_predicted_has_no_precision():
    precision, recall = precision_recall(confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 0]), 2))
    assert precision[1].isnan() and recall.tolist() == [1.0, 0.0]


def test_precision_recall_needs_a_square_matrix():
    with pytest.raises(ValueError, match="square confusion matrix"):
        precision_recall(torch.ones(2, 3))


def test_plot_precision_recall_draws_two_bars_per_class():
    matplotlib.use("Agg")
    ax = plot_precision_recall(confusion_matrix(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 1]), 3))
    assert len(ax.patches) == 6


def test_digit_captions_stay_legible_at_the_notebook_width_and_do_not_overlap():
    matplotlib.use("Agg")
    titles = [f"{t}→{(t + 3) % 10} (0.9{t})" for t in range(10)] * 2 + ["4: 9 / 9"] * 4      # 03's and 06's
    fig = plot_digits(torch.zeros(24, 1, 28, 28), titles, suptitle="Wrong and confident: true→predicted")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown_px = fig.get_tightbbox(renderer).width * fig.dpi                  # as the inline backend crops it
    scale = min(1.0, NOTEBOOK_WIDTH_PX / shown_px)                          # JupyterLab shrinks wider figures
    captions = [ax.title for ax in fig.axes]
    for title in captions:
        assert title.get_fontsize() * scale >= 9, (title.get_fontsize(), scale)
    for row in range(3):
        boxes = [t.get_window_extent(renderer) for t in captions[8 * row: 8 * row + 8]]
        assert all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:]))
