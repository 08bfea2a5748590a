"""One Euler-Maruyama step of the stochastic Perona-Malik equation (paper preset at t = 1: alpha1,
lambda1 finite, additive white noise alpha2 dW), contenders side by side in one process:

* spdekit (numba kernels, tamed EM),
* the straightforward numpy implementation (spdekit's readable reference backend, tamed EM),
* torch on the CPU written the obvious way (benchmarks/_torch_step.py, tamed EM),
* py-pde (benchmarks/_pypde.py: same continuum right-hand side and noise, py-pde's own numba
  Euler-Maruyama; py-pde has no tamed scheme and no batch axis, so its per-field step time is
  multiplied by the number of (sample, channel) fields).

Every contender draws its own Gaussian increments inside the timed step (numpy/torch generators,
numba's for py-pde). The roofline: a memory copy of the state measured in the same run; the
achieved bandwidth of spdekit's kernel step counts the minimum traffic of a step (read u, read dW,
write the new state: 3 arrays) with dW given. Each timing is a burst of BURST = 10 consecutive
steps of one contender (per-step time = burst / 10), as the steps of a run follow each other.

    python benchmarks/spde_step.py [--quick] [--json docs/perf/spde_step.json]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
from _harness import alternate, machine, write_json

import spdekit as sk
from spdekit.random import SampleStreams

SHAPES = [(128, 3, 32, 32), (4, 1, 256, 256), (1, 1, 1024, 1024)]
# A timing is a burst of consecutive steps, as in a run (a single step after another contender's run
# also measures waking the thread pool and refilling the caches, which a run pays once).
BURST = 10


def _contenders(shape, dtype, with_pypde=True):
    spde = sk.AnisotropicSPDE.paper_anisotropic(shape[-1])
    dt = 1e-3
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 1, shape).astype(dtype)
    dW = (np.sqrt(dt) * rng.standard_normal(shape)).astype(dtype)
    solver = sk.TamedEulerMaruyama()
    out, work = np.empty_like(u), np.empty_like(u)
    streams = SampleStreams(1, shape[0])
    sq = dtype.type(np.sqrt(dt))
    gen = np.random.default_rng(2)

    # as spdekit.simulate runs a step: increments drawn into a reused buffer, times sqrt(dt) in the same pass,
    # coefficients of the step precomputed, inputs validated once before the loop
    inc = np.empty_like(u)
    fast = {"coef": spde.coefficients(1.0, shape[0]), "checked": True, "out": out, "work": work}

    def spdekit_full():
        streams.standard_normal(shape, dtype=dtype, out=inc, scale=sq)
        solver.step(spde, 1.0, u, dt, inc, backend="numba", **fast)

    def spdekit_kernel():
        solver.step(spde, 1.0, u, dt, dW, backend="numba", **fast)

    def numpy_full():
        inc = gen.standard_normal(shape, dtype=dtype) * sq
        solver.step(spde, 1.0, u, dt, inc, backend="numpy", coef=fast["coef"], checked=True)

    fns = {"spdekit (numba)": spdekit_full, "numpy": numpy_full}
    errs = {}
    try:
        import torch
        from _torch_step import tamed_em_step

        c = spde.coefficients(1.0, shape[0])
        tdt = torch.float32 if dtype == np.float32 else torch.float64

        def col(v):
            return torch.as_tensor(v, dtype=tdt).view(-1, 1, 1, 1)

        a1, il1, a2 = col(c["alpha1"]), col(c["inv_lam1"]), col(c["alpha2"])
        ut = torch.from_numpy(u)
        ref = solver.step(spde, 1.0, u, dt, dW, backend="numpy")[0]
        got = tamed_em_step(ut, torch.from_numpy(dW), dt, a1, il1, a2).numpy()
        errs["torch"] = float(np.abs(got - ref).max() / np.abs(ref).max())
        got_nb = solver.step(spde, 1.0, u, dt, dW, backend="numba")[0]
        errs["spdekit"] = float(np.abs(got_nb - ref).max() / np.abs(ref).max())

        def torch_full():
            inc = torch.randn(shape, dtype=tdt) * float(sq)
            tamed_em_step(ut, inc, dt, a1, il1, a2)

        fns["torch (CPU)"] = torch_full
    except ImportError:
        pass
    pypde = None
    if with_pypde:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from _pypde import make_stepper

                c = spde.coefficients(1.0, 1)
                run, _ = make_stepper(shape[-2:], c["alpha1"][0], 1 / np.sqrt(c["inv_lam1"][0]), c["alpha2"][0], dt,
                                      dtype=dtype)
                run(2)
            pypde = run
        except ImportError:
            pass
    copy_dst = np.empty_like(u)
    from spdekit.backends import numba_backend

    coef, drift_out = fast["coef"], np.empty_like(u)

    def spdekit_drift():  # the drift b(u) of eq. (35) alone: the arithmetic floor of a step
        numba_backend.drift(u, coef["alpha1"], coef["inv_lam1"], out=drift_out)

    extras = {"copy": lambda: np.copyto(copy_dst, u), "spdekit kernel (dW given)": spdekit_kernel,
              "spdekit drift alone": spdekit_drift,
              # where the time goes: the increments alone (counter-based Philox + Box-Muller vs numpy's ziggurat)
              "spdekit normals (Philox)": lambda: streams.standard_normal(shape, dtype=dtype, out=inc),
              "numpy normals": lambda: gen.standard_normal(shape, dtype=dtype)}
    return fns, extras, pypde, errs, u


def bench_shape(shape, dtype, repeats, with_pypde=True, burst=BURST):
    t0 = time.perf_counter()
    fns, extras, pypde, errs, u = _contenders(shape, np.dtype(dtype), with_pypde)
    res = alternate({**fns, **extras}, repeats, burst=burst)
    med = {k: v["median"] for k, v in res.items()}
    if pypde is not None:
        n_fields = shape[0] * shape[1]
        t = time.perf_counter()
        pypde(3)
        probe = (time.perf_counter() - t) / 3
        steps = int(min(2000, max(3, 0.3 / probe)))  # about 0.3 s per repeat
        per_field = []
        for _ in range(max(3, repeats // 3)):
            t = time.perf_counter()
            pypde(steps)
            per_field.append((time.perf_counter() - t) / steps)
        med["py-pde"] = float(np.median(per_field)) * n_fields
    copy_bw = 2 * u.nbytes / med["copy"]
    kernel_bw = 3 * u.nbytes / med["spdekit kernel (dW given)"]
    return {"shape": list(shape), "dtype": str(np.dtype(dtype)), "seconds_per_step": med,
            "all_seconds": {k: v["all"] for k, v in res.items()},
            "max_rel_diff_vs_numpy_reference": errs, "copy_GBps": copy_bw / 1e9, "kernel_GBps": kernel_bw / 1e9,
            "fraction_of_copy_bandwidth": kernel_bw / copy_bw, "burst": burst, "wall_s": time.perf_counter() - t0}


def print_rows(rows):
    print(f"{'batch':>18s} {'dtype':>8s} {'contender':>26s} {'ms/step':>10s} {'spdekit speed-up':>17s}")
    for r in rows:
        sec = r["seconds_per_step"]
        base = sec["spdekit (numba)"]
        parts = ("copy", "spdekit kernel (dW given)", "spdekit drift alone", "spdekit normals (Philox)",
                 "numpy normals")
        for k in ("spdekit (numba)", "numpy", "torch (CPU)", "py-pde") + parts:
            if k in sec:
                ratio = "" if k in parts else f"{sec[k] / base:15.1f}x"
                batch = "x".join(map(str, r["shape"]))
                print(f"{batch:>18s} {r['dtype']:>8s} {k:>26s} {1e3 * sec[k]:10.3f} {ratio:>17s}")
        print(f"{'':>18s} {'':>8s} {'kernel bandwidth':>26s} {r['kernel_GBps']:9.1f} GB/s = "
              f"{100 * r['fraction_of_copy_bandwidth']:.0f}% of copy ({r['copy_GBps']:.1f} GB/s)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="float32 only, fewer repeats")
    p.add_argument("--no-pypde", action="store_true")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--json")
    a = p.parse_args(argv)
    rows = []
    for dtype in (("float32",) if a.quick else ("float32", "float64")):
        for shape in SHAPES:
            # py-pde compiles for 30-40 s per (grid, dtype): it runs in float32 only
            with_pypde = not a.no_pypde and dtype == "float32"
            rows.append(bench_shape(shape, dtype, 5 if a.quick else a.repeats, with_pypde))
            print(f"  done {shape} {dtype} in {rows[-1]['wall_s']:.0f} s", file=sys.stderr)
    print_rows(rows)
    write_json(a.json, {"benchmark": "spde_step", "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
