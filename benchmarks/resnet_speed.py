"""Seconds per training epoch of notebook 06's models, and the upgraded ResNet's time to 99.4 %.

    MNIST_ROOT=... python benchmarks/resnet_speed.py [--threads 2] [--epochs 5]

One run: the upgraded ResNet is trained with the notebook's recipe (its time to the target is the
number that matters); the two-layer CNN and the SE variant are timed over one epoch; the report's
ResNet over one epoch on a GPU, or extrapolated from a few training steps on a CPU.
"""
from __future__ import annotations

import argparse

import torch

from course_utils.cost import count_macs, count_parameters
from course_utils.data import load_mnist
from course_utils.device import get_device, seed_everything
from course_utils.models import TwoLayerCNN
from course_utils.resnets import FastResNet, ReportResNet, estimate_epoch_seconds, sgd_cosine
from course_utils.training import History, fit


def timed_fit(model: torch.nn.Module, data, epochs: int, batch_size: int, lr: float, device) -> History:
    """Train with the notebook's recipe (`sgd_cosine`) and return the History."""
    optimizer, scheduler = sgd_cosine(model, epochs, lr)
    return fit(model, data, optimizer, epochs, batch_size, scheduler, device=device, progress=False)


def main() -> None:
    """Run the benchmark and print one table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the upgraded ResNet (notebook default 5)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--target", type=float, default=0.994)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device()
    data = load_mnist()
    if not data.is_full:
        raise SystemExit("the benchmark needs the full MNIST: set MNIST_ROOT to a folder holding MNIST/raw.")
    rows = []

    seed_everything(1)
    cnn = TwoLayerCNN()
    optimizer = torch.optim.Adadelta(cnn.parameters(), lr=1.0)
    h = fit(cnn, data, optimizer, 1, 512, device=device, progress=False)
    rows.append(("two-layer CNN (batch 512)", cnn, h.epoch_seconds[0], "1 epoch", f"{100 * h.test_acc[-1]:.2f}"))

    seed_everything(1)
    report = ReportResNet()
    if device.type == "cuda":
        h = timed_fit(report, data, 1, args.batch_size, args.lr, device)
        rows.append(("report's ResNet", report, h.epoch_seconds[0], "1 epoch", f"{100 * h.test_acc[-1]:.2f}"))
    else:
        seconds = estimate_epoch_seconds(report, data.X_train, data.y_train, args.batch_size, steps=4,
                                         device=device)
        rows.append(("report's ResNet", report, seconds, "4 steps, extrapolated", "-"))

    seed_everything(1)
    resnet = FastResNet()
    h = timed_fit(resnet, data, args.epochs, args.batch_size, args.lr, device)
    per_epoch = sum(h.epoch_seconds) / len(h.epoch_seconds)
    rows.append(("upgraded ResNet", resnet, per_epoch, f"mean of {args.epochs} epoch(s)",
                 f"{100 * h.test_acc[-1]:.2f}"))
    resnet_history = h

    seed_everything(1)
    se = FastResNet(se_reduction=8)
    h = timed_fit(se, data, 1, args.batch_size, args.lr, device)
    rows.append(("upgraded ResNet + SE (r=8)", se, h.epoch_seconds[0], "1 epoch", f"{100 * h.test_acc[-1]:.2f}"))

    print(f"device {device}, {torch.get_num_threads()} CPU threads, batch {args.batch_size} "
          f"(CNN 512), test accuracy after the epochs timed")
    print(f"{'model':<28}{'params':>10}{'MACs/image':>13}{'s/epoch':>10}  {'timed over':<24}{'test acc %':>10}")
    for name, model, seconds, how, acc in rows:
        print(f"{name:<28}{count_parameters(model):>10,}{count_macs(model) / 1e6:>11.2f} M"
              f"{seconds:>10.1f}  {how:<24}{acc:>10}")
    accs = ", ".join(f"{100 * a:.2f}" for a in resnet_history.test_acc)
    reached = resnet_history.seconds_to(args.target)
    print(f"\nupgraded ResNet, test accuracy per epoch: {accs} %")
    print(f"time to {100 * args.target:.1f} %: " + (f"{reached:.1f} s of training" if reached is not None
                                                  else f"not reached in {args.epochs} epochs"))


if __name__ == "__main__":
    main()
