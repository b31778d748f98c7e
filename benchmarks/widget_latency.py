"""Kernel-side time of one explorer redraw (notebook 04), per model and layer, for digit and channel moves.

    python benchmarks/widget_latency.py [--repeats 20]

Prints the median and 90th percentile of `FilterExplorer` updates (feature map, blitted figure, PNG)
after one warm-up update: a digit move redraws the digit, the feature map and their texts; a channel
move also the filter panel. The end-to-end goal, key press to new figure in the browser, is 300 ms;
tests/test_browser.py measures that and writes build/test-artifacts/.
"""
import argparse
import statistics
import time

import torch

from course_utils.data import load_mnist
from course_utils.models import TutorialCNN, TwoLayerCNN
from course_utils.widgets import FilterExplorer


def time_moves(slider, values: range) -> list[float]:
    """Milliseconds for each move of `slider` to the next of `values`."""
    times = []
    for value in values:
        start = time.perf_counter()
        slider.value = value
        times.append(1000 * (time.perf_counter() - start))
    return times


def main() -> None:
    """Time digit- and channel-slider updates for every (model, conv layer) of the explorer; print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    data = load_mnist(download=False).subset(0, args.repeats + 2)
    explorer = FilterExplorer({"two-layer CNN": TwoLayerCNN(), "tutorial CNN": TutorialCNN()}, data.X_test)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'model':<15}{'layer':<10}{'move':<9}{'median ms':>10}{'p90 ms':>9}")
    for model in explorer.model_menu.options:
        explorer.model_menu.value = model
        for layer in explorer.layer_menu.options:
            explorer.layer_menu.value = layer                       # also the warm-up redraw
            channels = range(1, min(args.repeats, explorer.channel_slider.max) + 1)
            for move, times in (("digit", time_moves(explorer.digit_slider, range(1, args.repeats + 1))),
                                ("channel", time_moves(explorer.channel_slider, channels))):
                p90 = statistics.quantiles(times, n=10)[-1]
                print(f"{model:<15}{layer:<10}{move:<9}{statistics.median(times):>10.1f}{p90:>9.1f}")
            explorer.digit_slider.value = explorer.channel_slider.value = 0


if __name__ == "__main__":
    main()
