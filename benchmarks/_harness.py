"""Shared timing harness: contenders run in one process, alternating repetitions, medians."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time

import numpy as np


def alternate(fns: dict, repeats: int, warmup: int = 1, sync=None, no_warmup=(), burst: int = 1) -> dict:
    """Median / min / all seconds per call of each callable, interleaved so that machine noise
    (other processes, frequency changes) hits every contender alike. With ``burst`` > 1 a timing
    is ``burst`` consecutive calls (as the steps of a run follow each other), divided by ``burst``."""
    sync = sync or (lambda: None)
    for k, f in fns.items():
        for _ in range(0 if k in no_warmup else warmup):
            f()
    sync()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(burst):
                f()
            sync()
            times[k].append((time.perf_counter() - t) / burst)
    return {k: {"median": float(np.median(v)), "min": float(np.min(v)), "all": [float(x) for x in v]}
            for k, v in times.items()}


def machine() -> dict:
    info = {"python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        info["load_average_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        info["commit"] = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                                        text=True, timeout=5).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        info["commit"] = "?"
    import numba

    info["numba_threads"] = numba.get_num_threads()
    return info


def write_json(path, payload) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as fh:
            json.dump(payload, fh, indent=2)


def fmt_ms(s: float) -> str:
    return f"{1e3 * s:.3f}"
