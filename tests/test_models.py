"""The course's small networks: shapes, sizes, and equality with the report's layer order."""
import torch
from torch import nn

from course_utils.cost import count_macs, count_parameters, layer_costs
from course_utils.models import MLP, TutorialCNN, TwoLayerCNN


def report_order_cnn() -> nn.Sequential:
    """The report's network in its own order: conv, ReLU, conv, ReLU, pool, dropout, fc, ReLU, dropout, fc."""
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Dropout(0.25), nn.Flatten(), nn.Linear(2304, 64), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(64, 10))


def test_two_layer_cnn_shapes_and_size(mnist):
    model = TwoLayerCNN()
    assert model(mnist.X_train[:7]).shape == (7, 10)
    assert count_parameters(model) == 149_418
    shapes = {row.name: row.out_shape for row in layer_costs(model)}
    assert shapes["conv1"] == (8, 26, 26) and shapes["conv2"] == (16, 24, 24) and shapes["pool"] == (16, 12, 12)
    assert shapes["fc1"] == (64,)


def test_macs_follow_the_formula():
    # conv: outputs x C_in x k x k ; linear: in x out
    expected = 8 * 26 * 26 * 1 * 9 + 16 * 24 * 24 * 8 * 9 + 2304 * 64 + 64 * 10
    assert count_macs(TwoLayerCNN()) == expected


def test_pool_before_relu_is_the_reports_function(mnist):
    ours, theirs = TwoLayerCNN().eval(), report_order_cnn().eval()
    with torch.no_grad():
        for p, q in zip(theirs.parameters(), ours.parameters()):
            p.copy_(q)
        X = mnist.X_test[:64]
        assert torch.allclose(ours(X), theirs(X), atol=1e-6)


def test_tutorial_cnn_shapes():
    model = TutorialCNN()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert count_parameters(model) == (16 * 25 + 16) + 32 + (32 * 16 * 25 + 32) + 64 + 1568 * 10 + 10


def test_mlp_baseline_matches_the_cnn_budget(mnist):
    model = MLP()
    assert model(mnist.X_train[:5]).shape == (5, 10)
    assert count_parameters(model) == 784 * 188 + 188 + 188 * 10 + 10 == 149_470
    assert abs(count_parameters(model) - count_parameters(TwoLayerCNN())) < 100
