"""Speed-up of spdekit.ensemble from 1 to N local Dask workers (and the identical statistics).

    python validation/ensemble_scaling.py [--workers 1 2] [--paths 320] [--chunk 8] [--size 32] [--t1 1.0] [--repeat 2]

For each worker count: a LocalCluster of single-threaded worker processes (numba with one thread),
a warm-up that compiles numba in every worker (``client.run``), then ``--repeat`` timed ensembles of ``--paths`` paths
of the paper's anisotropic SPDE on a ``--size`` square image, reduced to the mean/variance of the
default functionals. Prints one table row per worker count and the machine's load average
(``os.getloadavg``) before and after each timed run: on a shared machine other jobs take cores and
the speed-up is bounded by the cores that are free. The statistics of every worker count are checked
to be bitwise equal to those of the first one.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import spdekit as sk
from spdekit.ensemble import ensemble, run_chunk


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--paths", type=int, default=320)
    ap.add_argument("--chunk", type=int, default=8, help="paths per Dask task")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--t1", type=float, default=1.0)
    ap.add_argument("--dt", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per worker count")
    args = ap.parse_args(argv)

    from dask.distributed import Client, LocalCluster

    spde = sk.AnisotropicSPDE.paper_anisotropic(args.size, T=args.t1)
    u0 = np.random.default_rng(1).uniform(-1, 1, (1, args.size, args.size)).astype(np.float32)
    kw = dict(t0=0.0, t1=args.t1, dt=args.dt, seed=args.seed, chunk_size=args.chunk, statistics=("mean", "var"),
              save_every=max(1, int(round(args.t1 / args.dt)) // 10), backend="numba")
    n_steps = int(round(args.t1 / args.dt))
    print(f"spdekit.ensemble: {args.paths} paths x {n_steps} steps of paper_anisotropic on "
          f"{args.size}x{args.size}, chunk_size {args.chunk}, tamed EM, numba backend; "
          f"{os.cpu_count()} CPU(s) on this machine")
    rows, ref = [], None
    for n in args.workers:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                          env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}) as cluster, Client(cluster) as c:
            # compile the numba kernels in EVERY worker (client.run), outside the timing
            # (numba also caches them on disk: a first run on a fresh checkout compiles, later ones load)
            c.run(run_chunk, spde, u0, 0, 1, 0.0, 2 * kw["save_every"] * args.dt, args.dt, None, kw["save_every"],
                  args.seed, "numba")
            for rep in range(args.repeat):
                load0 = os.getloadavg()[0]
                t0 = time.perf_counter()
                ds = ensemble(spde, u0, n_paths=args.paths, client=c, **kw)
                secs = time.perf_counter() - t0
                load1 = os.getloadavg()[0]
                stats = np.stack([ds["mean"].values, ds["var"].values])
                same = "reference" if ref is None else ("bitwise equal" if np.array_equal(stats, ref) else "DIFFERENT")
                ref = stats if ref is None else ref
                rows.append((n, rep, secs, load0, load1, same))
    base = min(r[2] for r in rows if r[0] == rows[0][0])
    print(f"{'workers':>7} | {'run':>3} | {'seconds':>8} | {'paths/s':>8} | {'speed-up':>8} | "
          f"{'load avg before/after':>21} | statistics")
    print("-" * 90)
    for n, rep, secs, l0, l1, same in rows:
        print(f"{n:>7} | {rep:>3} | {secs:>8.2f} | {args.paths / secs:>8.2f} | {base / secs:>8.2f} | "
              f"{l0:>10.2f} / {l1:<8.2f} | {same}")
    print("speed-up: best run of the first worker count / this run")
    return 0 if all(r[5] != "DIFFERENT" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
