"""Time per tamed Euler-Maruyama step: numpy reference vs numba kernels, side by side.

    python benchmarks/step.py [--batch 128 3 32 32] [--dtype float32] [--repeats 15] [--json out.json]

Both backends step the same state with the same increments (the paper's anisotropic preset at
t = 1, where alpha1 and lambda1 are both active), in one process, alternating repetitions so that
machine noise hits both alike. Reported: median (and min) seconds per step, and the ratio
reference/numba. Two rows: the kernel step given dW (what the backends differ in), and the full
step of the simulation loop including drawing the Gaussian increments on the host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import spdekit as sk
from spdekit.backends import numba_backend


def _time(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def run(batch=(128, 3, 32, 32), dtype="float32", repeats=15, stencil="paper"):
    dtype = np.dtype(dtype)
    spde = sk.AnisotropicSPDE.paper_anisotropic(batch[-1], stencil=stencil)
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 1, batch).astype(dtype)
    dt = 1e-3
    dW = (np.sqrt(dt) * rng.standard_normal(batch)).astype(dtype)
    solver = sk.TamedEulerMaruyama()
    out, work = np.empty_like(u), np.empty_like(u)
    noise_rng = np.random.default_rng(1)

    kernels = {
        "numpy": lambda: solver.step(spde, 1.0, u, dt, dW, backend="numpy"),
        "numba": lambda: solver.step(spde, 1.0, u, dt, dW, backend="numba", out=out, work=work),
    }

    def full(backend, **buf):
        def f():
            inc = np.sqrt(dt).astype(dtype) * spde.noise.sample(batch, noise_rng, dtype)
            solver.step(spde, 1.0, u, dt, inc, backend=backend, **buf)
        return f

    fulls = {"numpy": full("numpy"), "numba": full("numba", out=out, work=work)}
    # warm-up (numba compiles here) and a correctness check
    a = kernels["numpy"]()[0]
    b = kernels["numba"]()[0]
    err = float(np.abs(a - b).max() / np.abs(a).max())
    for f in fulls.values():
        f()

    rows = {}
    for label, fns in (("kernel step (dW given)", kernels), ("full step (with noise draw)", fulls)):
        times = {k: [] for k in fns}
        for _ in range(repeats):  # alternate: one repetition of each, in turn
            for k, fn in fns.items():
                times[k] += _time(fn, 1)
        rows[label] = {k: {"median": float(np.median(v)), "min": float(np.min(v))} for k, v in times.items()}
    return {
        "batch": list(batch), "dtype": str(dtype), "stencil": stencil, "repeats": repeats,
        "numba_threads": numba_backend.threads(), "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "max_rel_diff": err, "rows": rows,
    }


def print_table(res):
    print(f"tamed EM step, batch {'x'.join(map(str, res['batch']))} {res['dtype']}, stencil {res['stencil']}, "
          f"numba threads {res['numba_threads']}, {res['repeats']} alternating repeats")
    print(f"numba vs numpy max relative difference: {res['max_rel_diff']:.2e}")
    print(f"{'':30s} {'numpy ref [ms]':>15s} {'numba [ms]':>12s} {'ratio':>8s}")
    for label, r in res["rows"].items():
        ref, fast = r["numpy"]["median"], r["numba"]["median"]
        print(f"{label:30s} {1e3 * ref:15.2f} {1e3 * fast:12.2f} {ref / fast:7.1f}x")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs=4, default=[128, 3, 32, 32])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--stencil", default="paper", choices=["paper", "conservative"])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--json", help="also write the results as JSON")
    a = p.parse_args()
    res = run(tuple(a.batch), a.dtype, a.repeats, a.stencil)
    print_table(res)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
