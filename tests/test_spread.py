"""The seed spread: per-seed numbers as trained, their summary, and the binomial error of an accuracy."""
import math
import statistics

import pytest

from course_utils.model_cache import TrainConfig, train_or_load
from course_utils.spread import Spread, binomial_se, seed_spread


def test_spread_summary_matches_hand_computed_values():
    s = Spread((1, 2, 3, 4), (0.9874, 0.9871, 0.9860, 0.9866))
    assert s.mean == pytest.approx(0.986775)
    assert s.sd == pytest.approx(statistics.stdev(s.values)) and s.sd == pytest.approx(6.1305e-4, rel=1e-3)
    assert (s.low, s.high) == (0.9860, 0.9874)
    assert s.inside(0.9874) and not s.inside(0.9900)
    assert s.describe(100, " %") == "98.68 % ± 0.06 % (range 98.60 % – 98.74 %, 4 seeds)"
    assert Spread((1,), (0.5,)).sd == 0.0


def test_binomial_standard_error():
    assert binomial_se(0.987, 10_000) == pytest.approx(math.sqrt(0.987 * 0.013 / 10_000))
    assert 100 * binomial_se(0.987, 10_000) == pytest.approx(0.113, abs=1e-3)   # ±0.11 points at 98.7 %
    with pytest.raises(ValueError):
        binomial_se(1.2, 100)


def test_seed_spread_returns_the_numbers_of_each_seed(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_COURSE_CACHE", str(tmp_path))
    data = mnist.subset(512, 200)
    config = TrainConfig("TwoLayerCNN", optimizer="Adadelta", lr=1.0, batch_size=256, epochs=1)
    spread = seed_spread(config, data, seeds=[3, 4], progress=False)
    assert spread.test_acc.seeds == (3, 4)
    for seed, acc, loss in zip((3, 4), spread.test_acc.values, spread.test_loss.values):
        _, history = train_or_load(TrainConfig(**{**config.__dict__, "seed": seed}), data, progress=False)
        assert (acc, loss) == (history.test_acc[-1], history.test_loss[-1])     # loaded from the cache
    assert spread.test_acc.values[0] != spread.test_acc.values[1]             # different seeds, different draws
    with pytest.raises(ValueError, match="at least one seed"):
        seed_spread(config, data, seeds=[])
