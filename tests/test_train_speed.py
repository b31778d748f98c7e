"""The speed benchmark runs end to end on a few images, and its ratios are its own figures divided."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "train_speed.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("train_speed", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_prints_the_floor_and_each_loops_ratio_to_it(mnist, monkeypatch, capsys):
    if not mnist.is_full:
        pytest.skip("the benchmark needs the full MNIST (set MNIST_ROOT)")
    monkeypatch.setattr(sys, "argv", ["train_speed.py", "--images", "1024", "--epochs", "1", "--warmup", "0"])
    load_benchmark().main()
    out = capsys.readouterr().out
    gflops = float(re.search(r"matmul 2048x2048 fp32.*?\| +([\d.]+) GFLOP/s", out).group(1))
    mflop = float(re.search(r"860,320 MACs x 2 x 3\) +\| +([\d.]+) MFLOP", out).group(1))
    floor = float(re.search(r"floor per epoch +\| +([\d.]+) s", out).group(1))
    assert mflop == 5.16                                    # 860,320 MACs x 2 FLOPs x 3 = 5.16 MFLOP
    # the floor is printed to 1 ms (up to 0.0005 s off) and the GFLOP/s it comes from to 0.1: both roundings
    assert floor == pytest.approx(1024 * 860_320 * 6 / (gflops * 1e9), rel=0.02, abs=0.0006)
    rows = re.findall(r"\| (.+?) +\| +([\d.]+) \| +([\d.]+)x \|", out)
    assert [name for name, _, _ in rows] == ["course loop (`fit`), batch 512", "course loop (`fit`), batch 32",
                                            "DataLoader + ToTensor (PyTorch example), batch 512"]
    exact_floor = 1024 * 860_320 * 6 / (gflops * 1e9)      # the printed floor is rounded to 0.0005 s
    for _, seconds, ratio in rows:
        assert float(seconds) > 0                        # printed seconds are rounded to 0.0005 s, ratios to 0.005
        assert float(ratio) == pytest.approx(float(seconds) / exact_floor, rel=0.01, abs=0.0006 / exact_floor + 0.006)
