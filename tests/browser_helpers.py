"""Driving JupyterLab in headless Chromium (Debian's package) with Playwright, and reading the PNGs it shows."""
from __future__ import annotations

import base64
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from matplotlib import colormaps
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyter_lab(root: Path, env: dict[str, str], timeout: float = 60) -> Iterator[str]:
    """Run JupyterLab on 127.0.0.1 serving `root`, all Jupyter state under root/.state; yield its base URL+token."""
    state = root / ".state"
    env = {**os.environ, **env}
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR",
                "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
        (state / var).mkdir(parents=True, exist_ok=True)
        env[var] = str(state / var)
    port, token = free_port(), secrets.token_hex(16)
    log = open(state / "jupyter.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; see {state / 'jupyter.log'}") from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def decode_png(src: str) -> Image.Image:
    """The image of a `data:image/png;base64,...` address (an <img> src), its text chunks in `.text`."""
    header, _, data = src.partition(",")
    if header != "data:image/png;base64":
        raise ValueError(f"not a base64 PNG data address: {src[:40]!r}")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def colour_bars(image: Image.Image, cmap: str = "RdBu_r", min_height: float = 0.4,
                min_width: int = 4) -> list[tuple[int, int]]:
    """Column ranges [x0, x1) where `cmap` runs from its top colour down to its bottom one, as a colour bar does.

    A column counts when it holds a run of at least `min_height` of the image height whose pixels are all
    within a few levels of the colour map, their positions on it falling from above 0.95 to below 0.05
    and never rising.
    """
    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float32)      # (256, 3)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)                          # (H, W, 3)
    flat = pixels.reshape(-1, 3)
    position, near = np.empty(len(flat)), np.empty(len(flat), dtype=bool)
    for i in range(0, len(flat), 16384):                         # nearest colour-map entry, in chunks
        chunk = flat[i:i + 16384]
        distance = (chunk ** 2).sum(-1, keepdims=True) - 2 * chunk @ lut.T + (lut ** 2).sum(-1)
        position[i:i + 16384], near[i:i + 16384] = distance.argmin(-1) / 255, distance.min(-1) < 3 * 6 ** 2
    position, near = position.reshape(pixels.shape[:2]), near.reshape(pixels.shape[:2])
    height = int(min_height * pixels.shape[0])
    columns = [x for x in range(pixels.shape[1]) if _is_bar_column(position[:, x], near[:, x], height)]
    bars, start = [], None
    for x, next_x in zip(columns, [*columns[1:], None]):
        start = x if start is None else start
        if next_x != x + 1:
            if x + 1 - start >= min_width:
                bars.append((start, x + 1))
            start = None
    return bars


def _is_bar_column(position: np.ndarray, near: np.ndarray, min_run: int) -> bool:
    """Whether a column holds a run of colour-map pixels at least `min_run` long falling from ~1 to ~0."""
    run_start = None
    for y, ok in enumerate([*near, False]):
        if ok and run_start is None:
            run_start = y
        elif not ok and run_start is not None:
            run = position[run_start:y]
            if (y - run_start >= min_run and run[0] > 0.95 and run[-1] < 0.05
                    and np.all(np.diff(run) <= 1 / 255)):
                return True
            run_start = None
    return False


def text_in_top_band(image: Image.Image, band: float = 0.1, parts: int = 3) -> list[bool]:
    """For each of `parts` equal columns of the image: whether its top `band` holds dark (text) pixels."""
    gray = np.asarray(image.convert("L"))
    top = gray[: max(1, int(band * gray.shape[0]))]
    return [bool((chunk < 100).any()) for chunk in np.array_split(top, parts, axis=1)]
