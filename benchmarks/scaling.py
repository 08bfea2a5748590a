"""Scaling of spdekit's tamed EM step (numba, float32, paper preset at t = 1, dW given): time per
step from 32^2 to 2048^2 nodes (the log-log slope against the number of unknowns should be about 1),
and with 1 vs all threads (parallel efficiency = t1 / (n * tn)). Each timing is a burst of 10
consecutive steps called as spdekit.simulate calls them.

    python benchmarks/scaling.py [--json docs/perf/scaling.json]
"""

from __future__ import annotations

import argparse

import numba
import numpy as np
from _harness import alternate, machine, write_json

import spdekit as sk

SIZES = (32, 64, 128, 256, 512, 1024, 2048)
BURST = 10  # a timing is 10 consecutive steps, as in a run


def step_fn(n, threads):
    spde = sk.AnisotropicSPDE.paper_anisotropic(n)
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 1, (1, 1, n, n)).astype(np.float32)
    dW = (0.03 * rng.standard_normal(u.shape)).astype(np.float32)
    out, work = np.empty_like(u), np.empty_like(u)
    solver = sk.TamedEulerMaruyama()

    # as spdekit.simulate runs a step: coefficients precomputed, inputs validated once
    fast = {"coef": spde.coefficients(1.0, 1), "checked": True, "out": out, "work": work}

    def f():
        numba.set_num_threads(threads)
        solver.step(spde, 1.0, u, 1e-3, dW, backend="numba", **fast)

    return f


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json")
    a = p.parse_args(argv)
    nmax = numba.config.NUMBA_NUM_THREADS
    rows = []
    for n in SIZES:
        reps = int(np.clip(2e6 / (n * n), 5, 100))
        res = alternate({1: step_fn(n, 1), nmax: step_fn(n, nmax)}, reps, burst=BURST)
        t1, tn = res[1]["median"], res[nmax]["median"]
        rows.append({"n": n, "unknowns": n * n, "t_1thread": t1, "t_all": tn, "threads": nmax,
                     "efficiency": t1 / (nmax * tn)})
    numba.set_num_threads(nmax)
    x = np.log([r["unknowns"] for r in rows])
    slopes = {k: float(np.polyfit(x[2:], np.log([r[k] for r in rows])[2:], 1)[0]) for k in ("t_1thread", "t_all")}
    print(f"{'grid':>10s} {'1 thread [ms]':>14s} {f'{nmax} threads [ms]':>15s} {'ns/node':>9s} {'efficiency':>11s}")
    for r in rows:
        print(f"{r['n']:>5d}^2    {1e3 * r['t_1thread']:14.3f} {1e3 * r['t_all']:15.3f} "
              f"{1e9 * r['t_all'] / r['unknowns']:9.2f} {100 * r['efficiency']:10.0f}%")
    print(f"log-log slope of time vs unknowns (128^2 and up): 1 thread {slopes['t_1thread']:.3f}, "
          f"{nmax} threads {slopes['t_all']:.3f}")
    write_json(a.json, {"benchmark": "scaling", "machine": machine(), "rows": rows, "slopes": slopes})


if __name__ == "__main__":
    main()
