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


def test_prediction_interval_width_is_students_t():
    from course_utils.spread import prediction_k
    assert prediction_k(5) == pytest.approx(2.7764 * math.sqrt(1.2), abs=1e-3)       # ± 3.04 sd for 5 seeds
    assert prediction_k(30) == pytest.approx(2.0452 * math.sqrt(1 + 1 / 30), abs=1e-3)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        prediction_k(1)


def test_reproduction_verdict_by_hand():
    from course_utils.spread import SeedSpread, reproduction_verdict
    seeds = (1, 2, 3, 4, 5)
    spread = SeedSpread(TrainConfig("TwoLayerCNN"), Spread(seeds, (0.9870, 0.9875, 0.9865, 0.9872, 0.9868)),
                        Spread(seeds, (0.0390, 0.0380, 0.0400, 0.0385, 0.0395)))
    # accuracy: mean 0.9870, sd 0.000387 -> ± 3.04 sd = 98.58-98.82 %; loss: mean 0.0390, sd 0.00079 -> 0.0366-0.0414
    assert "is inside" in reproduction_verdict(spread, 0.9874, 0.0412)
    assert "98.58-98.82 %" in reproduction_verdict(spread, 0.9874, 0.0412)
    assert "is outside" in reproduction_verdict(spread, 0.9874, 0.0420)       # the loss alone can rule it out
    assert "is outside" in reproduction_verdict(spread, 0.9890, 0.0390)


def test_stored_spread_round_trips_and_the_course_file_holds_the_recipe(tmp_path):
    from course_utils.spread import REPORT_RECIPE, load_stored_spread, write_stored
    runs = [{"seed": s, "test_acc": 0.98 + s / 1000, "test_loss": 0.04 - s / 1000, "seconds": 100.0 + s}
            for s in (1, 2)]
    saved = {"config": REPORT_RECIPE.__dict__, "runs": runs, "machine": "a CPU", "torch": "2.x", "threads": 2,
             "command": "python -m course_utils.spread"}
    write_stored(saved, tmp_path / "spread.py")
    stored = load_stored_spread(tmp_path / "spread.py")
    assert stored.spread.test_acc.values == (0.981, 0.982) and stored.spread.test_loss.seeds == (1, 2)
    assert "a CPU (2 CPU thread(s)), torch 2.x, 102 s" in stored.provenance()
    course = load_stored_spread()                                 # the file notebook 03 reads
    assert course.spread.config == REPORT_RECIPE and course.spread.test_acc.seeds == (1, 2, 3, 4, 5)
    assert all(0.95 < acc <= 1 and 0 < loss < 0.1 for acc, loss in            # 15 epochs on the full MNIST
               zip(course.spread.test_acc.values, course.spread.test_loss.values))
    with pytest.raises(FileNotFoundError, match="python -m course_utils.spread"):
        load_stored_spread(tmp_path / "absent.py")


def test_the_stored_spread_needs_the_full_mnist(mnist, tmp_path):
    from course_utils.spread import measure_stored_spread
    with pytest.raises(ValueError, match="all 60,000"):
        measure_stored_spread(mnist.subset(1000), path=tmp_path / "spread.py")
    assert not (tmp_path / "spread.py").exists()
