"""Work-precision diagrams (issue 26, item 4): relative strong error at T against wall time for the
explicit and the stiff-stable solvers, measured side by side in one process on the same Brownian paths.
Writes the section "Work-precision" of docs/validation.md (between its markers; the rest of the file is
not touched), docs/work_precision.json and docs/figures/validation/work_precision*.png.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python validation/work_precision.py --sizes 128 256 512 --samples 2
    python validation/work_precision.py --quick --out /tmp/v.md --json /tmp/w.json --figures /tmp/fig   # 64^2 smoke

Contenders (library defaults, nothing tuned for one of them):

* ``tamed-fixed``: spdekit.TamedEulerMaruyama() (gamma 1, norm "l2") with a fixed step, dt = {4, 2, 1, 1/2,
  ...} times the explicit bound b = h^2 / (4 max alpha1) (above b tamed EM stays bounded but is not accurate);
  on the paper preset at 128^2 and 512^2 down to b/128, below the path's finest step by Brownian-bridge
  sub-increments (:func:`run_pass`; their normals from spdekit's Philox generator, the fastest here), so that it
  reaches 1e-2;
* ``tamed-bound``: the same solver on the grid of spdekit.StabilityBoundSteps(cfl) for cfl = 1, 1/2, ...
  (dt(t) = cfl h^2 / (4 alpha1(t))), each step end moved down to the Brownian path's grid (a path gives
  increments between its grid points only), so every step still satisfies the bound;
* ``em-fixed``, ``em-bound``: plain spdekit.EulerMaruyama() on the same two kinds of grid, dt <= b (the
  default taming, a Euclidean norm of the whole drift field, costs tamed EM most of its accuracy inside
  the bound: these show what an explicit step gives without it);
* ``theta``: spdekit.LinearlyImplicitTheta(theta=0.5) (rtol 1e-6, BiCGSTAB, the default Jacobi preconditioner:
  faster per step on this preset than preconditioner="dct", see the class's doc), dt = {64, 32, ...} b;
* ``aos``: spdekit.AOSEulerMaruyama(), same ladder.

The ladders per problem and size are in :func:`config` (shorter at larger N for the run's cost; at 512^2 and
above: one sample, each step timed once).

Problems: ``heat``, spdekit.problems.LinearHeatEquation(alpha1 = N/2, alpha2 = 1), conservative stencil,
T = 0.5, u0 = the 'camera' image scaled to [-1, 1]; reference: the exact solution on the same path
(LinearGaussianPath, stochastic convolutions per finest step). ``paper``: the Section 5.2 preset
AnisotropicSPDE.paper_anisotropic(N) (alpha1 Geometric(0.5, 2N), the same scaling as
validation/stiff_solvers.py and the preset itself), T = 2, same u0; reference: explicit EM on the
same spdekit.BrownianPath (increments of every coarser step are sums of its finest ones), 4 times finer
than the finest explicit point.

Error: per sample ||u - u_ref|| / ||u_ref|| at T, RMS over the samples. Time: the sum of the solver-step
times of the run (numba backend, the same call path as spdekit.simulate: precomputed coefficients,
ping-pong buffers); every step is timed twice back to back and the run time is the smaller of the two
sums ("best of 2 repeats"); the Brownian increments (shared by all contenders) are not counted.
One pass over the path per (problem, size), all contenders in it: per-point results go to a JSON cache
(out/work_precision/cache.json) after each pass, so a rerun integrates only the missing points (a pass
interrupted midway is rerun); the reference is kept as .npy there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np
from doc_sections import write_section
from tqdm import tqdm
from work_precision_report import (  # noqa: F401  (re-exported: the script's names)
    EXPLICIT,
    LABELS,
    LARGE,
    SCHEMES,
    SECTION,
    TARGET,
    TARGETS,
    analyse,
    figures,
    order_fit,
    rows_of,
    section,
    time_at,
    verdict,
)

import spdekit as sk
from spdekit.backends import get_backend, philox
from spdekit.problems import LinearHeatEquation


def image(n: int) -> np.ndarray:
    from skimage import data, transform

    img = transform.resize(data.camera().astype(np.float64) / 255.0, (n, n), anti_aliasing=True)
    return 2.0 * img - 1.0


def problem(name: str, n: int):
    """(spde, T, reference kind)."""
    if name == "heat":
        return LinearHeatEquation(alpha1=n / 2.0, alpha2=1.0), 0.5, "exact"
    if name == "paper":
        return sk.AnisotropicSPDE.paper_anisotropic(n), 2.0, "fine"
    raise ValueError(name)


def config(pname: str, n: int, quick: bool):
    """The finest path step (b / factor), the samples and per scheme the ladder (multiples of the explicit
    bound b, or cfl values). The
    fine reference of the paper preset is 4 times finer than the finest explicit point; the exact reference
    of the heat equation needs no finer step. Smaller ladders at larger N (cost: the path's normal deviates
    and theta's solves), the same cut-off for both stiff schemes. ``tamed-fixed`` on the paper preset at
    128^2 and from LARGE on goes on below the reference's 4-times rule and below the path's finest step (run_pass
    steps those on Brownian-bridge sub-increments of each finest increment) down to b/128, so that it reaches 1e-2.
    ``repeats``: how many times each step is timed (the smaller sum is kept)."""
    if quick:
        factor = 4 if pname == "paper" else 2
        return {"factor": factor, "samples": None, "tamed-fixed": [2.0, 1.0, 0.5], "tamed-bound": [1.0, 0.5],
                "em-fixed": [1.0, 0.5], "em-bound": [1.0, 0.5], "theta": [16.0, 8.0, 4.0], "aos": [16.0, 8.0, 4.0]}
    if pname == "heat":
        factor, stiff_min = 32, 0.25
    else:
        factor, stiff_min = (32, 0.25) if n <= 128 else (8, 0.5)
    finest = 1.0 / factor if pname == "heat" else 4.0 / factor
    keep = lambda v, lo=finest: [x for x in v if x >= lo - 1e-12]  # noqa: E731
    tamed = keep([4.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0625])
    if pname == "paper" and (n <= 128 or n >= LARGE):  # down to 1e-2 (bridged below the path's b / factor)
        tamed += [x for x in (0.0625, 0.03125, 0.015625, 0.0078125) if x not in tamed]
    return {"factor": factor, "samples": 1 if n >= LARGE else None, "repeats": 1 if n >= LARGE else 2,
            "tamed-fixed": tamed,
            "tamed-bound": keep([1.0, 0.5, 0.25, 0.125, 0.0625]),
            "em-fixed": keep([1.0, 0.5, 0.25, 0.125, 0.0625]), "em-bound": keep([1.0, 0.5, 0.25, 0.125, 0.0625]),
            "theta": keep([64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0, 0.5, 0.25], max(finest, stiff_min)),
            "aos": keep([64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0, 0.5, 0.25], max(finest, stiff_min))}


def solver_for(scheme):
    if scheme.startswith("tamed"):
        return sk.TamedEulerMaruyama()
    if scheme.startswith("em"):
        return sk.EulerMaruyama()
    if scheme == "theta":
        return sk.LinearlyImplicitTheta(theta=0.5)
    return sk.AOSEulerMaruyama()


def bound_grid(spde, T: float, cfl: float, dt_min: float) -> np.ndarray:
    """Fine-grid indices of the step ends of StabilityBoundSteps(cfl), each step shortened to a whole
    number of the path's finest steps (>= 1)."""
    sched = sk.StabilityBoundSteps(cfl=cfl)
    K = round(T / dt_min)
    out, k = [0], 0
    while k < K:
        d = sched.largest_step(spde, k * dt_min, (K - k) * dt_min)
        k += max(1, min(K - k, int(math.floor(d / dt_min * (1 + 1e-12)))))
        out.append(k)
    return np.asarray(out)


def cache_key(pname, n, B, seed, scheme, p, factor):
    return f"{pname}:{n}:{B}:{seed}:b/{factor}:{scheme}:{p:g}"


# ---------------------------------------------------------------------- one pass over the path


def fine_chunks(path, K):
    step = max(1, min(path.block_steps, K))
    for i0 in range(0, K, step):
        yield i0, path.fine_increments(i0, min(K, i0 + step))


def run_pass(pname, n, B, seed, cfg, ref_file, cache, cache_file):
    """Integrate every missing (scheme, param) point and the reference in one pass over the path (all
    schemes side by side: their steps interleave in time on the same increments)."""
    spde, T, ref_kind = problem(pname, n)
    b = spde.stability_bound(0.0, T)
    factor = cfg["factor"]  # finest path step = b / factor
    dt_min = b / factor
    K = round(T / dt_min)
    u0 = np.repeat(image(n)[None, None], B, axis=0)
    be = get_backend("numba", u0)
    need_ref = not os.path.exists(ref_file)
    todo = [(s, p) for s in SCHEMES for p in cfg[s] if cache_key(pname, n, B, seed, s, p, factor) not in cache]
    if not todo and not need_ref:
        return
    if ref_kind == "exact":
        path = spde.brownian_path(u0.shape, 0.0, T, dt_min, seed)
    else:
        path = sk.BrownianPath(u0.shape, 0.0, T, dt_min, seed)
    runs = []
    for scheme, p in todo:
        sub = 1
        if scheme.endswith("-bound"):
            g = bound_grid(spde, T, p, dt_min)
            sk_steps = len(sk.StabilityBoundSteps(cfl=p).grid(spde, 0.0, T)) - 1
        elif p * factor < 1 - 1e-9:  # below the path's finest step: bridged sub-steps (bridge)
            sub = round(1.0 / (p * factor))
            g = np.arange(0, K + 1)
            sk_steps = None
        else:
            m = round(p * factor)
            g = np.arange(0, K + 1, m)
            sk_steps = None
        assert g[-1] == K
        times = g * dt_min if sub == 1 else np.arange(K * sub + 1) * (dt_min / sub)
        explicit = scheme in EXPLICIT
        runs.append({"scheme": scheme, "solver": solver_for(scheme), "p": p, "grid": g, "pos": 1, "u": u0.copy(),
                     "W0": np.zeros(u0.shape),
                     "table": spde.coefficient_table(times[:-1], B) if explicit else None,
                     "buf": np.empty_like(u0) if explicit else None, "work": np.empty_like(u0) if explicit else None,
                     "rep": [0.0] * cfg.get("repeats", 2), "iters": [], "finite": True, "sk_steps": sk_steps,
                     "sub": sub})
    subs = [r for r in runs if r["sub"] > 1]
    M = max((r["sub"] for r in subs), default=1)
    assert all(M % r["sub"] == 0 for r in subs)
    ref = u0.copy() if (need_ref and ref_kind == "fine") else None
    ref_solver, ref_table = sk.EulerMaruyama(), None
    if ref is not None:
        ref_table = spde.coefficient_table(np.arange(K) * dt_min, B)
        ref_buf, ref_work = np.empty_like(u0), np.empty_like(u0)
    W = np.zeros(u0.shape)
    ends = {}
    for r in runs:
        for j in r["grid"][1:]:
            ends.setdefault(int(j), []).append(r)
    desc = f"{pname} {n}^2, {len(runs)} points" + (" + reference" if ref is not None else "")
    with tqdm(total=K, desc=desc, unit="step", leave=False, mininterval=2.0) as bar, \
            np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", sk.StabilityWarning)
        for i0, chunk in fine_chunks(path, K):
            for c in range(chunk.shape[0]):
                i = i0 + c
                dWf = chunk[c]
                if ref is not None:
                    new, _ = ref_solver.step(spde, i * dt_min, ref, dt_min, dWf, backend=be, checked=True,
                                             coef=ref_table[i], out=ref_buf, work=ref_work)
                    ref_buf, ref = ref, new
                W += dWf
                if subs:  # the finest increment split into M Brownian-bridge sub-increments
                    z = philox.standard_normal((M,) + dWf.shape, (seed, 26), 0, i, scale=math.sqrt(dt_min / M))
                    z += dWf / M - z.mean(axis=0)
                for r in subs:
                    m = r["sub"]
                    for k in range(m):
                        dW = z[k * (M // m):(k + 1) * (M // m)].sum(axis=0)
                        j = (r["pos"] - 1) * m + k  # sub-step index
                        u, solver = r["u"], r["solver"]
                        for rep in range(cfg.get("repeats", 2)):
                            s = time.perf_counter()
                            new, ok = solver.step(spde, j * dt_min / m, u, dt_min / m, dW, backend=be, checked=True,
                                                  coef=r["table"][j], out=r["buf"], work=r["work"])
                            r["rep"][rep] += time.perf_counter() - s
                        r["buf"], r["u"] = u, new
                        r["finite"] = r["finite"] and bool(ok)
                    r["pos"] += 1
                for r in ends.get(i + 1, ()):
                    if r["sub"] > 1:
                        continue
                    j0, j1 = r["grid"][r["pos"] - 1], r["grid"][r["pos"]]
                    t, h = j0 * dt_min, (j1 - j0) * dt_min
                    dW = W - r["W0"]
                    r["W0"] = W.copy()
                    u, solver, scheme = r["u"], r["solver"], r["scheme"]
                    for rep in range(cfg.get("repeats", 2)):
                        if r["table"] is not None:
                            s = time.perf_counter()
                            new, ok = solver.step(spde, t, u, h, dW, backend=be, checked=True,
                                                  coef=r["table"][r["pos"] - 1], out=r["buf"], work=r["work"])
                            r["rep"][rep] += time.perf_counter() - s
                        elif scheme == "theta":
                            s = time.perf_counter()
                            new, ok, info = solver.step_info(spde, t, u, h, dW, backend=be, checked=True)
                            r["rep"][rep] += time.perf_counter() - s
                            if rep == 0:
                                r["iters"].append(float(np.mean(info["iterations"])))
                        else:
                            s = time.perf_counter()
                            new, ok = solver.step(spde, t, u, h, dW, backend=be, checked=True)
                            r["rep"][rep] += time.perf_counter() - s
                    if r["buf"] is not None:
                        r["buf"], r["u"] = u, new
                    else:
                        r["u"] = new
                    r["finite"] = r["finite"] and bool(ok)
                    r["pos"] += 1
            bar.update(chunk.shape[0])
    if need_ref:
        if ref_kind == "exact":
            ref = spde.exact_solution(u0, path, T)
        os.makedirs(os.path.dirname(ref_file), exist_ok=True)
        np.save(ref_file, ref)
    ref = np.load(ref_file)
    rn = np.sqrt((ref**2).sum(axis=(1, 2, 3)))
    for r in runs:
        u = r["u"]
        with np.errstate(all="ignore"):
            rel = np.sqrt(((u - ref) ** 2).sum(axis=(1, 2, 3))) / rn
        steps = (len(r["grid"]) - 1) * r["sub"]
        best = min(r["rep"])
        scheme = r["scheme"]
        row = {"problem": pname, "size": n, "samples": B, "seed": seed, "scheme": scheme, "param": r["p"],
               "param_kind": "cfl" if scheme.endswith("-bound") else "dt / bound", "bound": b, "T": T,
               "dt_mean": T / steps, "dt_over_bound_mean": T / steps / b, "steps": steps,
               "steps_unsnapped": r["sk_steps"], "dt_min_path": dt_min, "reference": ref_kind,
               "rel_err": rel.tolist(), "err": float(np.sqrt(np.mean(rel**2))), "finite": r["finite"],
               "max_abs": float(np.nanmax(np.abs(u))) if np.isfinite(u).all() else float("inf"),
               "bridged_substeps": r["sub"],
               "ref_dt": dt_min if ref_kind == "fine" else None, "time_s": best, "repeats_s": list(r["rep"]),
               "ms_per_step": 1e3 * best / steps,
               "iterations_mean": float(np.mean(r["iters"])) if r["iters"] else None,
               "iterations_max": float(np.max(r["iters"])) if r["iters"] else None}
        cache[cache_key(pname, n, B, seed, scheme, r["p"], factor)] = row
    with open(cache_file, "w") as f:
        json.dump(cache, f, indent=1)


# ---------------------------------------------------------------------- analysis


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512], help="image sizes N (N^2 grids)")
    ap.add_argument("--samples", type=int, default=3, help="samples (batch) per run")
    ap.add_argument("--quick", action="store_true", help="smoke run: 64^2, 2 samples, short ladders")
    ap.add_argument("--problems", nargs="+", default=["heat", "paper"], choices=["heat", "paper"])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--cache", default="out/work_precision", help="folder of the per-point cache")
    ap.add_argument("--out", default="docs/validation.md", help="markdown file whose section is (re)written")
    ap.add_argument("--json", default="docs/work_precision.json", help="raw figures")
    ap.add_argument("--figures", default="docs/figures/validation", help="figure folder")
    args = ap.parse_args(argv)
    sizes = [64] if args.quick else sorted(args.sizes)
    B = 2 if args.quick else args.samples
    start = time.perf_counter()
    os.makedirs(args.cache, exist_ok=True)
    cfile = os.path.join(args.cache, "cache" + ("_quick" if args.quick else "") + ".json")
    cache = json.load(open(cfile)) if os.path.exists(cfile) else {}
    keys = set()
    samples = {}
    for n in sizes:
        for pname in args.problems:
            cfg = config(pname, n, args.quick)
            if cfg is None:
                print(f"{pname} {n}^2: not measured (config)", flush=True)
                continue
            Bn = cfg["samples"] or B
            samples[f"{pname}:{n}"] = Bn
            ref_file = os.path.join(args.cache, f"ref_{pname}_{n}_{Bn}_{args.seed}_{cfg['factor']}"
                                                f"{'_quick' if args.quick else ''}.npy")
            t = time.perf_counter()
            run_pass(pname, n, Bn, args.seed, cfg, ref_file, cache, cfile)
            for scheme in SCHEMES:
                keys |= {cache_key(pname, n, Bn, args.seed, scheme, p, cfg["factor"]) for p in cfg[scheme]}
                rs = [cache[cache_key(pname, n, Bn, args.seed, scheme, p, cfg["factor"])] for p in cfg[scheme]]
                print(f"{pname} {n}^2 {scheme}: " + ", ".join(f"{r['param']:g}: err {r['err']:.3g} "
                                                              f"{r['time_s']:.3g} s" for r in rs), flush=True)
            print(f"  [{time.perf_counter() - t:.0f} s]", flush=True)
    results = [cache[k] for k in sorted(keys)]
    ana = analyse(results, sizes, args.problems)
    wall = time.perf_counter() - start
    figs = figures(results, sizes, args.problems, args.figures)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"target": TARGET, "sizes": sizes, "samples": B, "problems": args.problems, "seed": args.seed,
                   "numba_threads": os.environ.get("NUMBA_NUM_THREADS"), "analysis": ana, "points": results,
                   "wall_s": wall, "argv": sys.argv[1:]}, f, indent=1)
    fig_rel = os.path.relpath(os.path.abspath(args.figures), os.path.dirname(os.path.abspath(args.out)))
    write_section(args.out, SECTION, section(results, ana, sizes, args.problems, B, wall, args, fig_rel))
    print(f"wrote {args.out}, {args.json}, {', '.join(figs)} in {wall:.0f} s")
    return results, ana


if __name__ == "__main__":
    main()
