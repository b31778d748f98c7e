"""Per-class precision and recall from a confusion matrix, against hand-counted values."""
import matplotlib
import pytest
import torch

from course_utils.plotting import confusion_matrix, plot_precision_recall, precision_recall


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
