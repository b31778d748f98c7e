"""Seconds per training epoch of notebook 06's networks, and the upgrade's time to 99.4 % validation accuracy.

    MNIST_ROOT=... python benchmarks/resnet_speed.py [--threads 2] [--epochs 5]

The data is the notebook's: 50,000 training digits, the last 10,000 of the training set for validation
(`load_mnist().with_validation()`), so an epoch is 50,000 digits for every row. The upgrade (FastResNet)
is trained with the notebook's recipe, and its time to the target is read on validation accuracy. The
report's exact ResNet (ReportResNet, 745,626 parameters) is trained for one epoch with the same recipe on
a GPU; on a CPU its epoch is extrapolated from a few timed training steps (a full epoch takes minutes).
The two-layer CNN and the SE variant are timed over one epoch.
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
    parser.add_argument("--target", type=float, default=0.994, help="validation accuracy to reach")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device()
    data = load_mnist()
    if not data.is_full:
        raise SystemExit("the benchmark needs the full MNIST: set MNIST_ROOT to a folder holding MNIST/raw.")
    data = data.with_validation()
    rows = []

    seed_everything(1)
    report = ReportResNet()
    if device.type == "cuda":
        h = timed_fit(report, data, 1, args.batch_size, args.lr, device)
        rows.append(("report's ResNet (exact)", report, h.epoch_seconds[0], "1 epoch", f"{100 * h.val_acc[-1]:.2f}"))
    else:
        seconds = estimate_epoch_seconds(report, data.X_train, data.y_train, args.batch_size, steps=4,
                                         device=device, epoch_images=len(data.X_train))
        rows.append(("report's ResNet (exact)", report, seconds, "4 steps, extrapolated", "-"))

    seed_everything(1)
    resnet = FastResNet()
    h = timed_fit(resnet, data, args.epochs, args.batch_size, args.lr, device)
    rows.append(("upgraded ResNet", resnet, h.seconds / len(h.epoch_seconds), f"mean of {args.epochs} epoch(s)",
                 f"{100 * h.val_acc[-1]:.2f}"))
    resnet_history = h

    seed_everything(1)
    se = FastResNet(se_reduction=8)
    h = timed_fit(se, data, 1, args.batch_size, args.lr, device)
    rows.append(("upgraded ResNet + SE (r=8)", se, h.epoch_seconds[0], "1 epoch", f"{100 * h.val_acc[-1]:.2f}"))

    seed_everything(1)
    cnn = TwoLayerCNN()
    h = fit(cnn, data, torch.optim.Adadelta(cnn.parameters(), lr=1.0), 1, 512, device=device, progress=False)
    rows.append(("two-layer CNN (batch 512)", cnn, h.epoch_seconds[0], "1 epoch", f"{100 * h.val_acc[-1]:.2f}"))

    print(f"device {device}, {torch.get_num_threads()} CPU threads, batch {args.batch_size} (CNN 512), "
          f"epochs of {len(data.X_train):,} digits, validation accuracy after the epochs timed")
    print(f"{'model':<28}{'params':>10}{'MACs/image':>13}{'s/epoch':>10}  {'timed over':<24}{'val acc %':>10}")
    for name, model, seconds, how, acc in rows:
        print(f"{name:<28}{count_parameters(model):>10,}{count_macs(model) / 1e6:>11.2f} M"
              f"{seconds:>10.1f}  {how:<24}{acc:>10}")
    accs = ", ".join(f"{100 * a:.2f}" for a in resnet_history.val_acc)
    reached = resnet_history.seconds_to(args.target)
    print(f"\nupgraded ResNet, validation accuracy per epoch: {accs} %")
    print(f"time to {100 * args.target:.1f} % validation accuracy: "
          + (f"{reached:.1f} s of training" if reached is not None else f"not reached in {args.epochs} epochs"))
    print(f"report's ResNet / upgrade, seconds per epoch: {rows[0][2] / rows[1][2]:.0f} x")


if __name__ == "__main__":
    main()
