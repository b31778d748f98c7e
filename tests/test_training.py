"""The training loop on real digits: a step lowers the loss, a short fit beats chance widely."""
import time

import pytest
import torch
import torch.nn.functional as F

from course_utils.checks.two_layer_cnn import train_step_reference
from course_utils.device import seed_everything
from course_utils.models import TwoLayerCNN
from course_utils.training import History, batches, evaluate, fit


def test_batches_cover_every_example_once():
    X, y = torch.arange(10).float().reshape(10, 1), torch.arange(10)
    seen = torch.cat([yb for _, yb in batches(X, y, 3, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert [len(yb) for _, yb in batches(X, y, 4)] == [4, 4, 2]


def test_one_step_lowers_the_loss_on_a_fixed_batch(mnist):
    seed_everything(0)
    model = TwoLayerCNN().eval()
    X, y = mnist.X_train[:256], mnist.y_train[:256]
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    with torch.no_grad():
        before = F.cross_entropy(model(X), y).item()
    train_step_reference(model, optimizer, X, y)
    model.eval()
    with torch.no_grad():
        after = F.cross_entropy(model(X), y).item()
    assert after < before - 0.05


def test_short_fit_beats_chance_widely(mnist):
    seed_everything(1)
    model = TwoLayerCNN()
    data = mnist.subset(4000, 1000)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    history = fit(model, data, optimizer, epochs=2, batch_size=128, device=torch.device("cpu"), progress=False)
    assert isinstance(history, History)
    assert len(history.step_loss) == 2 * 32 and len(history.test_acc) == 2
    assert history.test_acc[-1] > 0.8                      # chance is 0.1
    assert history.step_loss[-1] < history.step_loss[0] / 3
    assert history.seconds > 0
    loss, acc = evaluate(model, data.X_test, data.y_test)
    assert acc == history.test_acc[-1] and loss == history.test_loss[-1]


def test_fit_is_repeatable_with_a_seed(mnist):
    data = mnist.subset(1000, 200)
    runs = []
    for _ in range(2):
        seed_everything(5)
        model = TwoLayerCNN()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        runs.append(fit(model, data, opt, epochs=1, batch_size=100, seed=5, device=torch.device("cpu"),
                        progress=False).step_loss)
    assert runs[0] == runs[1]


def test_fit_with_validation_scores_test_once_at_the_end(mnist):
    seed_everything(1)
    model = TwoLayerCNN()
    data = mnist.with_validation(1000).subset(2000, 500)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    history = fit(model, data, optimizer, epochs=2, batch_size=256, device=torch.device("cpu"), progress=False)
    assert len(history.val_acc) == len(history.val_loss) == 2 and len(history.test_acc) == 1
    assert evaluate(model, data.X_val, data.y_val) == (history.val_loss[-1], history.val_acc[-1])
    assert evaluate(model, data.X_test, data.y_test) == (history.test_loss[-1], history.test_acc[-1])
    assert history.seconds_to(0.5) is not None and history.seconds_to(1.01) is None
    no_val = History(test_acc=[0.9], epoch_seconds=[1.0])
    with pytest.raises(ValueError, match="validation"):
        no_val.seconds_to(0.5)


@pytest.mark.parametrize("validation", [True, False])
def test_train_or_load_prints_no_test_number_on_load(mnist, tmp_path, monkeypatch, capsys, validation):
    from course_utils.model_cache import TrainConfig, train_or_load
    monkeypatch.setenv("CNN_COURSE_CACHE", str(tmp_path))
    data = (mnist.with_validation(500) if validation else mnist).subset(1000, 300, 300)
    config = TrainConfig("TwoLayerCNN", optimizer="Adadelta", lr=1.0, batch_size=250, epochs=1, seed=3)
    _, trained = train_or_load(config, data, torch.device("cpu"), progress=False)
    capsys.readouterr()
    _, loaded = train_or_load(config, data, torch.device("cpu"), progress=False)
    printed = capsys.readouterr().out
    assert loaded == trained and printed.startswith("Loaded TwoLayerCNN")
    test_number = f"{100 * trained.test_acc[-1]:.2f}"
    assert "test accuracy" not in printed and test_number not in printed
    if validation:
        assert f"validation accuracy {100 * trained.val_acc[-1]:.2f} %" in printed


def test_the_training_estimate_is_within_a_factor_of_two_of_the_run(mnist):
    from course_utils.model_cache import TrainConfig, build_model, estimate_seconds, make_optimizer
    data = mnist.with_validation(1000).subset(4096, 500, 1000)
    config = TrainConfig("TwoLayerCNN", optimizer="Adadelta", lr=1.0, batch_size=256, epochs=2, seed=2)
    estimate = estimate_seconds(config, data, torch.device("cpu"))
    model = build_model(config)
    optimizer, _ = make_optimizer(config, model)
    start = time.perf_counter()
    fit(model, data, optimizer, config.epochs, config.batch_size, device=torch.device("cpu"), progress=False)
    actual = time.perf_counter() - start                          # training and every epoch's validation
    assert 0.5 < estimate / actual < 2, (estimate, actual)
