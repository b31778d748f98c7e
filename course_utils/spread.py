"""One run is one draw: the spread of a recipe over seeds, the stored 15-epoch spread, and the binomial error.

`python -m course_utils.spread` trains (or loads from the cache) the report's recipe, 15 epochs on the
full MNIST, with seeds 1-5, and writes the five (accuracy, loss) pairs with the machine, the torch
version and the command to `course_utils/measured_spread.py` (a data module, so it installs with the
package), which notebook 03 reads.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable

import scipy.stats
import torch

from .data import MNISTData, load_mnist
from .model_cache import TrainConfig, train_or_load

STORED = Path(__file__).resolve().parent / "measured_spread.py"
REPORT_RECIPE = TrainConfig("TwoLayerCNN", optimizer="Adadelta", lr=1.0, lr_gamma=0.7, batch_size=512, epochs=15)


@dataclass(frozen=True)
class Spread:
    """Per-seed values of one metric and their summary (sample standard deviation, n - 1)."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean over seeds."""
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def low(self) -> float:
        """Smallest value over seeds."""
        return min(self.values)

    @property
    def high(self) -> float:
        """Largest value over seeds."""
        return max(self.values)

    def inside(self, value: float, k: float = 2.0) -> bool:
        """True when `value` lies within mean ± k·sd of the seeds (k = 2: about 95 % of draws)."""
        return abs(value - self.mean) <= k * self.sd

    def describe(self, scale: float = 1.0, unit: str = "", digits: int = 2) -> str:
        """'mean ± sd (range low–high, n seeds)', values multiplied by `scale`."""
        f = lambda v: f"{scale * v:.{digits}f}{unit}"
        return (f"{f(self.mean)} ± {scale * self.sd:.{digits}f}{unit} "
                f"(range {f(self.low)} – {f(self.high)}, {len(self.values)} seeds)")


@dataclass(frozen=True)
class SeedSpread:
    """Final test accuracy and loss of one recipe trained with several seeds."""

    config: TrainConfig
    test_acc: Spread
    test_loss: Spread


def seed_spread(config: TrainConfig, data: MNISTData, seeds: Iterable[int] = range(1, 6),
                device: torch.device | None = None, progress: bool = True) -> SeedSpread:
    """Train (or load from the cache) `config` once per seed; return the spread of the final test metrics."""
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seed_spread needs at least one seed, e.g. seeds=range(1, 6).")
    accs, losses = [], []
    for seed in seeds:
        _, history = train_or_load(replace(config, seed=seed), data, device=device, progress=progress)
        accs.append(history.test_acc[-1])
        losses.append(history.test_loss[-1])
    return SeedSpread(config, Spread(seeds, tuple(accs)), Spread(seeds, tuple(losses)))


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on n independent examples: sqrt(p (1 - p) / n)."""
    if not 0 <= accuracy <= 1 or n <= 0:
        raise ValueError(f"accuracy must lie in [0, 1] and n be positive (got {accuracy}, {n}).")
    return math.sqrt(accuracy * (1 - accuracy) / n)


def prediction_k(n: int) -> float:
    """Half-width, in sample sds, of the 95 % prediction interval for one more draw: t(0.975, n-1)·√(1 + 1/n)."""
    if n < 2:
        raise ValueError(f"a prediction interval needs at least 2 seeds (got {n}).")
    return scipy.stats.t.ppf(0.975, n - 1) * math.sqrt(1 + 1 / n)


def reproduction_verdict(spread: SeedSpread, accuracy: float, loss: float, who: str = "the report's") -> str:
    """Whether (accuracy, loss) lie inside the spread's 95 % prediction intervals, worded with both intervals."""
    k, acc, los = prediction_k(len(spread.test_acc.values)), spread.test_acc, spread.test_loss
    inside = acc.inside(accuracy, k) and los.inside(loss, k)
    return (f"{who} {100 * accuracy:.2f} % / {loss:.4f} is {'inside' if inside else 'outside'} the spread of the same "
            f"recipe over {len(acc.values)} seeds (95 % prediction interval, mean ± {k:.2f} sd: "
            f"{100 * (acc.mean - k * acc.sd):.2f}-{100 * (acc.mean + k * acc.sd):.2f} %, "
            f"loss {los.mean - k * los.sd:.4f}-{los.mean + k * los.sd:.4f})")


@dataclass(frozen=True)
class StoredSpread:
    """A seed spread measured once and stored: its numbers and where and how they were measured."""

    spread: SeedSpread
    machine: str
    torch_version: str
    threads: int
    command: str
    seconds: tuple[float, ...]
    note: str = ""

    def provenance(self) -> str:
        """One line: the machine, torch, threads, the median training time per run, the command and any note."""
        return (f"measured on {self.machine} ({self.threads} CPU thread(s)), torch {self.torch_version}, "
                f"{statistics.median(self.seconds):.0f} s of training per run, with `{self.command}`"
                + (f"; {self.note}" if self.note else ""))


HEADER = ("The report's recipe trained with seeds 1-5 on the full MNIST, measured once; written by "
          "`python -m course_utils.spread`, read by `load_stored_spread`.")


def _read(path: Path) -> dict:
    """The SPREAD dict of a data module written by `measure_stored_spread` (JSON after "SPREAD = ")."""
    return json.loads(path.read_text().split("SPREAD = ", 1)[1])


def load_stored_spread(path: Path = STORED) -> StoredSpread:
    """The stored spread written by `python -m course_utils.spread`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `python -m course_utils.spread` (with MNIST_ROOT set) "
                                "to measure the 15-epoch spread and write it.")
    saved = _read(path)
    seeds = tuple(run["seed"] for run in saved["runs"])
    spread = SeedSpread(TrainConfig(**saved["config"]), Spread(seeds, tuple(r["test_acc"] for r in saved["runs"])),
                        Spread(seeds, tuple(r["test_loss"] for r in saved["runs"])))
    return StoredSpread(spread, saved["machine"], saved["torch"], saved["threads"], saved["command"],
                        tuple(r["seconds"] for r in saved["runs"]), saved.get("note", ""))


def machine_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one) and the platform."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return f"{cpu}, {platform.system()} {platform.machine()}"


def measure_stored_spread(data: MNISTData, seeds: Iterable[int] = range(1, 6), path: Path = STORED,
                          command: str = "python -m course_utils.spread", note: str = "") -> StoredSpread:
    """Train (or load) the report's recipe once per seed on `data` (the full MNIST) on the CPU and store it."""
    if not data.is_full or data.has_validation or len(data.X_train) != 60_000 or len(data.X_test) != 10_000:
        raise ValueError("the stored spread is the report's recipe on all 60,000 training digits: pass load_mnist() "
                         "with MNIST_ROOT pointing at the full MNIST.")
    runs = []
    for seed in seeds:
        _, history = train_or_load(replace(REPORT_RECIPE, seed=seed), data, torch.device("cpu"), progress=False)
        runs.append({"seed": seed, "test_acc": history.test_acc[-1], "test_loss": history.test_loss[-1],
                     "seconds": round(history.seconds, 1)})
    saved = {"config": asdict(REPORT_RECIPE), "runs": runs, "machine": machine_name(), "torch": torch.__version__,
             "threads": torch.get_num_threads(), "command": command, "note": note}
    write_stored(saved, path)
    return load_stored_spread(path)


def write_stored(saved: dict, path: Path = STORED) -> None:
    """Write `saved` (config, runs, machine, torch, threads, command) as the data module `path`."""
    path.write_text(f'"""{HEADER}"""\n\nSPREAD = ' + json.dumps(saved, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Command line: measure the report's 15-epoch spread over seeds 1-5 and store it."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 1..SEEDS (default 5)")
    parser.add_argument("--out", type=Path, default=STORED, help=f"where to write (default {STORED})")
    parser.add_argument("--note", default="", help="stored beside the numbers, e.g. how busy the machine was")
    args = parser.parse_args(argv)
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = (f"{threads}python -m course_utils.spread" + (f" --seeds {args.seeds}" if args.seeds != 5 else "")
               + (f" --out {shlex.quote(str(args.out))}" if args.out != STORED else ""))
    stored = measure_stored_spread(load_mnist(download=False), range(1, args.seeds + 1), args.out, command, args.note)
    print(f"{stored.spread.test_acc.describe(100, ' %')}; loss {stored.spread.test_loss.describe(digits=4)}")
    print(stored.provenance(), "->", args.out)


if __name__ == "__main__":
    main()
