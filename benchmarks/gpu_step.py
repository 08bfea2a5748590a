"""GPU step benchmark: spdekit's cupy kernels vs torch written the obvious way vs numba on the CPU.

    python benchmarks/gpu_step.py [--repeats 50] [--json out.json]

Problem: one tamed Euler-Maruyama step of the paper's anisotropic preset (Section 5.2, additive
white noise) at t = 1, float32, batches 128x3x32x32 and 16x3x256x256, same state and increments
for every contender. The achieved memory bandwidth of a step counts the minimum traffic of a step
(read u, read dW, write the new state: 3 values per node; spdekit's kernels actually read u twice)
and is compared with a device-to-device copy (read + write) measured in the same run.
Timings: CUDA events around each call, medians over alternating repetitions.

"spdekit cupy, fused run" is :class:`spdekit.backends.cupy_backend.EMRun` (what ``simulate`` uses on the
GPU for white noise): 200 steps per call, the coefficients uploaded once, the Wiener increments drawn
inside the step kernel (so it does MORE work than the per-step contenders, which are handed a
precomputed dW), the finiteness flag read once per call; its time per step is the call's time / 200.
Its minimum traffic is 2 values per node (read u, write the new state), that of a copy.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time

import numpy as np
from _harness import machine, write_json

import spdekit as sk
from spdekit.backends import available


def _median_ms(fn, repeats, sync):
    out = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return 1e3 * float(np.median(out))


def run(repeats=50):
    import cupy as cp

    results = [_bench_shape(shape, repeats) for shape in ((128, 3, 32, 32), (16, 3, 256, 256))]
    return {"device": cp.cuda.runtime.getDeviceProperties(0)["name"].decode(), "repeats": repeats,
            "results": results}


def _bench_shape(shape, repeats):
    import cupy as cp
    import torch
    from _torch_step import tamed_em_step

    sync = cp.cuda.get_current_stream().synchronize
    spde = sk.AnisotropicSPDE.paper_anisotropic(shape[-1])
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 1, shape).astype(np.float32)
    dt = 1e-3
    dW = (np.sqrt(dt) * rng.standard_normal(shape)).astype(np.float32)
    c = spde.coefficients(1.0, shape[0])
    solver = sk.TamedEulerMaruyama()
    u_c, dW_c = cp.asarray(u), cp.asarray(dW)
    out_c = cp.empty_like(u_c)
    u_t, dW_t = torch.as_tensor(u, device="cuda"), torch.as_tensor(dW, device="cuda")

    def col(v):
        return torch.as_tensor(v, dtype=torch.float32, device="cuda").view(-1, 1, 1, 1)

    a1, il1, a2 = col(c["alpha1"]), col(c["inv_lam1"]), col(c["alpha2"])

    ref = solver.step(spde, 1.0, u, dt, dW, backend="numpy")[0]
    got_c = solver.step(spde, 1.0, u_c, dt, dW_c, backend="cupy", out=out_c)[0].get()
    got_t = tamed_em_step(u_t, dW_t, dt, a1, il1, a2).cpu().numpy()
    scale = np.abs(ref).max()
    errs = {"cupy": float(np.abs(got_c - ref).max() / scale), "torch": float(np.abs(got_t - ref).max() / scale)}

    from spdekit.backends import get_backend
    from spdekit.random import SampleStreams

    n_run = 200

    def em_run(n):
        return get_backend("cupy").em_run(shape, np.float32, spde._columns(np.full(n, 1.0)), np.full(n, dt),
                                          SampleStreams(0, shape[0], device="cupy"), spde.stencil, spde.spacing,
                                          solver.taming, spde.diffusivity1, spde.diffusivity2)

    dW0 = SampleStreams(0, shape[0]).standard_normal(shape, np.float32, scale=np.sqrt(dt))
    ref0 = solver.step(spde, 1.0, u, dt, dW0, backend="numpy")[0]
    got_f = em_run(1).advance(u_c.copy(), 0, 1)[0].get()
    errs["cupy fused run"] = float(np.abs(got_f - ref0).max() / np.abs(ref0).max())
    fused_run, fused_state = em_run(n_run), {"u": u_c.copy()}

    def fused():
        fused_state["u"] = fused_run.advance(fused_state["u"], 0, n_run)[0]

    fns = {
        "spdekit cupy": lambda: solver.step(spde, 1.0, u_c, dt, dW_c, backend="cupy", out=out_c),
        "spdekit cupy, fused run": fused,
        "torch (obvious)": lambda: tamed_em_step(u_t, dW_t, dt, a1, il1, a2),
        "device copy": lambda: cp.copyto(out_c, u_c),
    }
    out_n, work_n = np.empty_like(u), np.empty_like(u)

    def cpu():
        solver.step(spde, 1.0, u, dt, dW, backend="numba", out=out_n, work=work_n)

    for f in [*fns.values(), cpu]:
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            times[k].append(_median_ms(f, 1, sync))
    t_cpu = _median_ms(cpu, max(3, repeats // 10), lambda: None)
    med = {k: float(np.median(v)) for k, v in times.items()}
    med["spdekit cupy, fused run"] /= n_run
    copy_bw = 2 * u.nbytes / (med["device copy"] * 1e-3)
    step_bw = 3 * u.nbytes / (med["spdekit cupy"] * 1e-3)
    fused_bw = 2 * u.nbytes / (med["spdekit cupy, fused run"] * 1e-3)
    return {"shape": list(shape), "ms": {**med, "numba (CPU)": t_cpu}, "max_rel_err": errs,
            "copy_GBps": copy_bw / 1e9, "step_GBps": step_bw / 1e9, "fraction_of_copy": step_bw / copy_bw,
            "fused_GBps": fused_bw / 1e9, "fused_fraction_of_copy": fused_bw / copy_bw}


def print_table(res):
    print(f"tamed EM step on {res['device']}, float32, median of {res['repeats']} alternating repeats")
    for r in res["results"]:
        shape = "x".join(map(str, r["shape"]))
        ms = r["ms"]
        e = r["max_rel_err"]
        print(f"\nbatch {shape}   (max rel. diff. vs numpy reference: cupy {e['cupy']:.1e}, fused run "
              f"{e['cupy fused run']:.1e}, torch {e['torch']:.1e})")
        for k in ("spdekit cupy", "spdekit cupy, fused run", "torch (obvious)", "numba (CPU)", "device copy"):
            ratio = ms[k] / ms["spdekit cupy"]
            print(f"  {k:24s} {ms[k]:9.4f} ms   {ratio:6.2f}x spdekit cupy's time")
        print(f"  bandwidth: step {r['step_GBps']:.0f} GB/s (3 values/node) vs copy {r['copy_GBps']:.0f} GB/s "
              f"-> {100 * r['fraction_of_copy']:.0f}% of copy")
        print(f"  fused run: {r['fused_GBps']:.0f} GB/s (2 values/node) -> {100 * r['fused_fraction_of_copy']:.0f}% "
              f"of copy")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--json")
    a = p.parse_args()
    try:
        import cupy  # noqa: F401
        import torch
    except ImportError as exc:
        print(f"gpu_step: needs cupy and torch ({exc})")
        return 0
    if not available("cupy") or not torch.cuda.is_available():
        print("gpu_step: no CUDA device available; nothing to measure")
        return 0
    res = run(a.repeats)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_table(res)
    print(buf.getvalue(), end="")
    if a.json:  # the payload of the other benchmarks (benchmarks/report.py renders docs/performance.md from it)
        import cupy as cp

        gpu = {"gpu": res["device"], "cuda_driver": cp.cuda.runtime.driverGetVersion(), "cupy": cp.__version__,
               "torch": torch.__version__}
        write_json(a.json, {"benchmark": "gpu_step", "machine": {**machine(), **gpu}, "table": buf.getvalue(),
                            **res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
