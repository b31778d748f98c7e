"""Imported by the grader's fork server: pays torch's first-use costs once, before any fork.

Every worker, checker, recording child and student kernel (`kernel`) is forked from the fork
server, so each starts with torch's lazy imports done and its kernels initialised, and the
kernel also with IPython and the torchvision that reads MNIST imported, instead of paying
seconds of CPU per process. It runs single-threaded: a process that forks must not have started
OpenMP threads.
"""
from __future__ import annotations

import io

import cloudpickle  # noqa: F401  (the kernel's export cell)
import ipykernel.kernelapp  # noqa: F401
import torch
import torch.nn.functional as F
import torchvision.datasets.mnist  # noqa: F401  (course_utils.data reads MNIST with it)

from course_utils.grading.kernel import isolated_path, registered


def warm_up() -> None:
    """One forward, backward and SGD step of the two-layer CNN; one weights-only save and load."""
    from course_utils.models import TwoLayerCNN

    state = torch.get_rng_state()
    model = TwoLayerCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(torch.zeros(2, 1, 28, 28)), torch.zeros(2, dtype=torch.long)).backward()
    optimizer.step()
    buffer = io.BytesIO()
    torch.save({"x": [torch.zeros(1)]}, buffer)
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    torch.set_rng_state(state)


torch.set_num_threads(1)
warm_up()
isolated_path()                        # both asked once, here, for every worker and kernel forked later
registered()
