"""Measure the stiff-stable solvers (spdekit.implicit) and write the section "Stiff-stable solvers" of
docs/validation.md (between its markers; the rest of the file is not touched) and docs/stiff_solvers.json.

    python validation/stiff_solvers.py                 # about 5 minutes on one core
    python validation/stiff_solvers.py --quick --out /tmp/v.md --json /tmp/v.json   # smoke run (32^2, short)

What it measures (issue 26, item 3):

0. The linear heat version of the preset (lambda1 = lambda2 = inf, conservative stencil, 64^2, flat
   start), mode by mode without Monte Carlo: the final noise variance of every scheme against the exact
   one, from the schemes' per-mode amplification and noise factors (checked here against the solvers
   on a few modes, to 1e-10) and the exact Ornstein-Uhlenbeck recursion on 20,000 substeps.
1. The law at large steps. The Section 5.2 preset (64^2, T = 2, 4 samples; alpha1 Geometric(0.5, 128),
   lambda1 the ramp (16) from 0.025, alpha2 Geometric(0.01, 2), lambda2 = inf, paper stencil) and its
   multiplicative variant (lambda2 = 0.5), from the 'camera' image scaled to [-1, 1] and from a flat
   image (0: the final state is all noise, the stringent case for the noise's law). Every scheme is
   driven by one Brownian path (spdekit.BrownianPath, increments of a coarse step = sums of the fine
   ones); the reference is explicit Euler-Maruyama at dt = 1e-4 (0.05 times the explicit bound
   h^2 / (4 max alpha1) = 1/512) on that path. Per sample: the final spatial mean and spatial standard
   deviation, compared with the reference's (difference of the means; relative difference of the stds).
   Steps: dt = 0.04 (50 steps, 20.5 times the bound) and dt = 0.1 (20 steps, 51.2 times).
2. Strong orders on the linear heat equation with additive noise (exact solution on the same path,
   spdekit.problems.LinearHeatEquation) and on the paper SPDE (fine reference of the same solver).

Every number in the section comes from this script's run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings

import numpy as np
from doc_sections import markers, write_section

import spdekit as sk
from spdekit.problems import LinearHeatEquation, paper_multiplicative

SECTION = "stiff-solvers"
BEGIN, END = markers(SECTION)
TOL_MEAN, TOL_STD = 0.05, 0.20


def image(n: int) -> np.ndarray:
    from skimage import data, transform

    img = transform.resize(data.camera().astype(np.float64) / 255.0, (n, n), anti_aliasing=True)
    return 2.0 * img - 1.0


def schemes(explicit=True):
    """(key, label, solver, recommended)."""
    T = sk.LinearlyImplicitTheta
    out = [
        ("theta0.5", "theta = 1/2, transformed (the default)", T(), True),
        ("theta0.5-integral", "theta = 1/2, integral", T(coefficients="integral"), False),
        ("theta0.5-left", "theta = 1/2, left", T(coefficients="left"), False),
        ("theta1", "theta = 1, transformed", T(1.0), False),
        ("theta1-left", "theta = 1, left", T(1.0, coefficients="left"), False),
        ("aos", "AOS, transformed (the default)", sk.AOSEulerMaruyama(), False),
        ("aos-left", "AOS, left", sk.AOSEulerMaruyama("left"), False),
    ]
    if explicit:
        out += [("tamed", "tamed EM (explicit)", sk.TamedEulerMaruyama(), False),
                ("em", "EM (explicit)", sk.EulerMaruyama(), False)]
    return out


LABELS = {"theta0.5": "theta = 1/2", "theta1": "theta = 1", "aos": "AOS"}


# ---------------------------------------------------------------------- 0. mode by mode


def mode_factors(solver, spde, t, dt, mux, muy):
    """(R, P) per mode of the conservative Laplacian (eigenvalue mux + muy): one step maps the mode's
    coefficient z to R z + P dB (dB the mode's Wiener increment), from the solver's step plan and the
    scheme's formulas (spdekit/implicit.py)."""
    from spdekit.implicit import step_plan

    plan = step_plan(spde, t, dt, 1, solver.coefficients)
    a1, amp, C, rho = plan.coef.alpha1[0], plan.coef.alpha2[0], plan.shift[0], plan.factor[0]
    if isinstance(solver, sk.LinearlyImplicitTheta):
        x = (mux + muy) * a1 * dt
        den = 1 - C / 2 - solver.theta * x
        return rho * (1 + C / 2 + (1 - solver.theta) * x) / den, rho * amp / den
    g = sum(0.5 / (1 - C / 2 - 2 * m * a1 * dt) for m in (mux, muy))
    return rho * (1 + C / 2) * g, rho * amp * g


def check_mode_factors(spde, n):
    """The per-mode formulas against the solvers (numpy backend) on a few DCT-II modes."""
    from spdekit import spectral

    mu = spectral.axis_eigenvalues(n, "conservative")
    worst = 0.0
    for _, _, solver, _ in schemes(explicit=False):
        if isinstance(solver, sk.LinearlyImplicitTheta):  # solve to rounding
            solver = sk.LinearlyImplicitTheta(solver.theta, rtol=1e-13, coefficients=solver.coefficients)
        for (kx, ky), t, dt in (((1, 0), 0.3, 0.1), ((5, 9), 1.2, 0.04), ((n - 1, n - 2), 1.9, 0.1)):
            z = np.zeros((1, 1, n, n))
            z[0, 0, ky, kx] = 1.0
            mode = spectral.from_modes(z, "conservative")
            R, P = mode_factors(solver, spde, t, dt, mu[kx], mu[ky])
            got_r = solver.step(spde, t, mode, dt, 0 * mode, backend="numpy")[0]
            got_p = solver.step(spde, t, 0 * mode, dt, mode, backend="numpy")[0]
            worst = max(worst, np.abs(got_r - R * mode).max(), np.abs(got_p - P * mode).max())
    if worst > 1e-10:
        raise AssertionError(f"per-mode formulas differ from the solvers by {worst:.3g}")
    return worst


def modal(quick: bool) -> dict:
    from spdekit import spectral

    n, T = (32 if quick else 64), 2.0
    S = sk.schedules  # the Section 5.2 schedules; lambda1 = lambda2 = inf: only the schedules matter
    spde = sk.AnisotropicSPDE(S.Geometric(0.5, 2.0 * n, T), float("inf"), S.Geometric(0.01, 2.0, T), float("inf"),
                              stencil="conservative")
    worst = check_mode_factors(spde, 12)
    mu1 = spectral.axis_eigenvalues(n, "conservative")
    mux, muy = mu1[None, :], mu1[:, None]
    mu = mux + muy
    # exact: Ornstein-Uhlenbeck recursion with coefficients frozen on each of 20,000 substeps (step means)
    from spdekit.implicit import step_mean

    N = 4000 if quick else 20000
    h = T / N
    v = np.zeros_like(mu)
    for k in range(N):
        t = np.array([k * h])
        a1 = step_mean(spde.alpha1, t, h)[0]
        a2sq = step_mean(spde.alpha2, t, h, 2)[0]
        e = np.exp(2 * mu * a1 * h)
        with np.errstate(divide="ignore", invalid="ignore"):
            inc = np.where(mu < 0, a2sq * np.expm1(2 * mu * a1 * h) / (2 * mu * a1), a2sq * h)
        v = e * v + inc
    exact = math.sqrt(v[mu < 0].sum() / n**2)
    bound = spde.stability_bound(0.0, T)
    growth = (spde.alpha2(T) ** 2 / spde.alpha1(T)) / (spde.alpha2(0.0) ** 2 / spde.alpha1(0.0))
    out = {"grid": n, "bound": bound, "check": worst, "exact_std": exact, "substeps": N, "target_growth": growth,
           "rows": []}
    for mult in (20, 50, 100):
        steps = int(T / (mult * bound))
        dt = T / steps
        for key, label, solver, _ in schemes(explicit=False):
            w = np.zeros_like(mu)
            for k in range(steps):
                R, P = mode_factors(solver, spde, k * dt, dt, mux, muy)
                w = R * R * w + P * P * dt
            std = math.sqrt(w[mu < 0].sum() / n**2)
            out["rows"].append({"scheme": key, "label": label, "ratio": dt / bound, "steps": steps, "std": std,
                                "rel": std / exact - 1})
    return out


def coarse_increments(path, dt):
    n = round((path.t1 - path.t0) / dt)
    return np.stack([path.increment(path.t0 + k * dt, path.t0 + (k + 1) * dt) for k in range(n)])


def figures(final, ref):
    m, s = final.mean(axis=(1, 2, 3)), final.std(axis=(1, 2, 3))
    rm, rs = ref.mean(axis=(1, 2, 3)), ref.std(axis=(1, 2, 3))
    finite = bool(np.isfinite(final).all())
    return {"mean": m.tolist(), "std": s.tolist(), "dmean": (m - rm).tolist(), "std_rel": (s / rs - 1).tolist(),
            "max_abs": float(np.nanmax(np.abs(final))) if finite else float("inf"), "finite": finite}


def law_at_large_steps(quick: bool) -> dict:
    n, B = (32, 2) if quick else (64, 4)
    T = 2.0
    dt_ref = 5e-4 if quick else 1e-4
    steps = {"20x": 0.04, "50x": 0.1} if not quick else {"20x": 0.08, "50x": 0.2}
    problems = {"additive": sk.AnisotropicSPDE.paper_anisotropic(n),
                "multiplicative": paper_multiplicative(n, lambda2=0.5)}
    starts = {"camera": np.repeat(image(n)[None, None], B, axis=0), "flat": np.zeros((B, 1, n, n))}
    bound = problems["additive"].stability_bound(0.0, T)
    path = sk.BrownianPath((B, 1, n, n), 0.0, T, dt_ref, seed=2026)
    incs = {k: coarse_increments(path, dt) for k, dt in steps.items()}
    out = {"grid": n, "batch": B, "T": T, "bound": bound, "dt_ref": dt_ref,
           "dt": {k: v for k, v in steps.items()}, "ratio": {k: v / bound for k, v in steps.items()}, "rows": []}
    for pname, spde in problems.items():
        for sname, u0 in starts.items():
            t = time.perf_counter()
            ref = sk.simulate(spde, u0, 0.0, T, dt_ref, solver=sk.EulerMaruyama(), brownian=path).final
            wall_ref = time.perf_counter() - t
            rs = ref.std(axis=(1, 2, 3))
            coarse = sk.simulate(spde, u0, 0.0, T, 5 * dt_ref, solver=sk.EulerMaruyama(), brownian=path).final
            out.setdefault("ref_check", []).append(
                {"problem": pname, "start": sname, "dt": 5 * dt_ref,
                 "std_rel": (coarse.std(axis=(1, 2, 3)) / rs - 1).tolist()})
            print(f"{pname} {sname}: reference ({round(T / dt_ref)} EM steps) {wall_ref:.1f} s, std {np.round(rs, 4)}",
                  flush=True)
            for key, label, solver, rec in schemes():
                for sk_, dt in steps.items():
                    t = time.perf_counter()
                    iters = []
                    with warnings.catch_warnings(), np.errstate(all="ignore"):
                        warnings.simplefilter("ignore", sk.StabilityWarning)
                        try:
                            final = sk.simulate(spde, u0, 0.0, T, dt, solver=solver, brownian=incs[sk_]).final
                        except sk.SimulationDiverged as exc:
                            final = np.full_like(u0, np.nan)
                            print(f"  {key} {sk_}: diverged at step {exc.step}", flush=True)
                    wall = time.perf_counter() - t
                    if isinstance(solver, sk.LinearlyImplicitTheta):
                        iters = krylov_iterations(spde, u0, dt, incs[sk_], solver)
                    row = {"problem": pname, "start": sname, "scheme": key, "label": label, "recommended": rec,
                           "steps": sk_, "dt": dt, "wall_s": wall, "ref_wall_s": wall_ref, "ref_std": rs.tolist(),
                           "krylov_iterations_per_step": iters, **figures(final, ref)}
                    out["rows"].append(row)
                    print(f"  {key:14s} {sk_}: |dmean| <= {np.nanmax(np.abs(row['dmean'])):.4f}, std rel "
                          f"{np.round(row['std_rel'], 3)}, {wall:.2f} s", flush=True)
    return out


def krylov_iterations(spde, u0, dt, incs, solver):
    """Mean Krylov iterations per step and plane along the run (re-run with step_info)."""
    u = u0.copy()
    its = []
    for k in range(incs.shape[0]):
        u, _, info = solver.step_info(spde, k * dt, u, dt, incs[k], backend="numba")
        its.append(float(np.mean(info["iterations"])))
    return [float(np.mean(its)), float(np.max(its))]


def orders(quick: bool) -> list[dict]:
    rows = []
    n_paths = 8 if quick else 32
    cases = [
        ("heat 16x16, conservative, white, alpha1 = alpha2 = 1, T = 1 (exact)",
         LinearHeatEquation(alpha1=1.0, alpha2=1.0), np.zeros((1, 16, 16)), 1.0),
        ("heat 16x16, paper stencil, white, alpha1 = alpha2 = 1, T = 1 (exact)",
         LinearHeatEquation(alpha1=1.0, alpha2=1.0, stencil="paper"), np.zeros((1, 16, 16)), 1.0),
    ]
    for label, prob, u0, T in cases:
        for key, solver, k0 in (("theta0.5", sk.LinearlyImplicitTheta(rtol=1e-10), 1),
                                ("theta0.5", sk.LinearlyImplicitTheta(rtol=1e-10), 3),
                                ("theta1", sk.LinearlyImplicitTheta(1.0, rtol=1e-10), 3),
                                ("aos", sk.AOSEulerMaruyama(), 3)):
            dts = [2.0**-k for k in range(k0, k0 + (3 if quick else 5))]
            t = time.perf_counter()
            res = sk.strong_order(prob, u0, 0.0, T, dts, solver, n_paths=n_paths, seed=11, backend="numba",
                                  n_boot=500)
            fit = res.order
            rows.append({"problem": label, "scheme": key, "dts": dts, "order": fit.order, "ci": list(fit.ci),
                         "theory": 1.0, "errors": res.errors().tolist(), "paths": n_paths,
                         "wall_s": time.perf_counter() - t})
            print(f"order {key} {label[:30]} 2^-{k0}..: {fit}", flush=True)
    # the paper SPDE (additive preset, 16x16, camera), reference: the same solver at min(dt)/16
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    u0 = image(16)[None]
    for key, solver, k0, k1, factor in (("theta0.5", sk.LinearlyImplicitTheta(rtol=1e-10), 3, 7, 16),
                                        ("aos", sk.AOSEulerMaruyama(), 3, 7, 16),
                                        ("theta0.5", sk.LinearlyImplicitTheta(rtol=1e-10), 8, 11, 8)):
        if quick:
            k1 = k0 + 2
        dts = [2.0**-k for k in range(k0, k1 + 1)]
        t = time.perf_counter()
        res = sk.strong_order(spde, u0, 0.0, 2.0, dts, solver, n_paths=n_paths // 2, seed=12, backend="numba",
                              n_boot=500, ref_factor=factor)
        fit = res.order
        rows.append({"problem": f"paper SPDE 16x16, additive (Sec. 5.2 preset), t in [0, 2], u0 = camera "
                                f"(reference: the same solver at min(dt) / {factor})",
                     "scheme": key, "dts": dts, "order": fit.order, "ci": list(fit.ci), "theory": None,
                     "errors": res.errors().tolist(), "paths": n_paths // 2, "wall_s": time.perf_counter() - t,
                     "bound": spde.stability_bound(0.0, 2.0)})
        print(f"order {key} paper SPDE 2^-{k0}..: {fit}", flush=True)
    return rows


# ---------------------------------------------------------------------- output


def _pct(x):
    return f"{100 * x:+.0f}%" if abs(x) < 10 else f"{1 + x:.3g} times"


def _range(v, f):
    v = np.asarray(v, dtype=np.float64)
    if not np.isfinite(v).all():
        return "not finite"
    lo, hi = f(v.min()), f(v.max())
    return lo if lo == hi else f"{lo} ... {hi}"


def section(mod: dict, law: dict, rows: list[dict], wall: float, args) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    ratio = law["ratio"]
    lines = [BEGIN, "## Stiff-stable solvers", "",
             f"*Generated by `python validation/stiff_solvers.py{' --quick' if args.quick else ''}` (spdekit "
             f"{sk.__version__}, commit {commit or '?'}, Python {platform.python_version()}, numpy {np.__version__}, "
             f"numba threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}); total wall time {wall:.0f} s. Do not "
             f"edit by hand: rerun the script (it rewrites this section only). Raw figures: "
             f"`docs/stiff_solvers.json`.*",
             "",
             "`spdekit.LinearlyImplicitTheta(theta=...)` (lagged-diffusivity stochastic theta-method, default "
             "theta = 1/2) and `spdekit.AOSEulerMaruyama()` (additive operator splitting): schemes, derivations and "
             "the noise over a step in `spdekit/implicit.py`; kernels in `spdekit/backends/implicit_numpy.py` and "
             "`implicit_numba.py`.", "",
             "### The linear heat version, mode by mode",
             "",
             f"The Section 5.2 schedules (alpha1 Geometric(0.5, {2 * mod['grid']}), alpha2 Geometric(0.01, 2), T = 2) "
             f"with lambda1 = lambda2 = inf on the conservative {mod['grid']}^2 grid, from a flat start: the final "
             f"noise standard deviation sqrt(sum of the non-constant modes' variances / N), exact "
             f"{mod['exact_std']:.5f} (Ornstein-Uhlenbeck recursion on {mod['substeps']} substeps), against each "
             f"scheme's, "
             f"computed from its per-mode amplification and noise factors (equal to the solvers' steps on test "
             f"modes within {mod['check']:.1e}). No Monte Carlo: these are the schemes' exact variances. "
             f"'transformed', 'integral', 'left': the `coefficients` option (spdekit/implicit.py).",
             "",
             "| scheme | " + " | ".join(f"{r['ratio']:.1f} x bound ({r['steps']} steps)" for r in mod["rows"]
                                        if r["scheme"] == "theta0.5") + " |",
             "|---|---|---|---|"]
    for key, label, _, _ in schemes(explicit=False):
        lines.append(f"| {label} | " + " | ".join(f"{100 * r['rel']:+.1f}%" for r in mod["rows"]
                                                  if r["scheme"] == key) + " |")

    def worst_modal(key):
        return max(abs(r["rel"]) for r in mod["rows"] if r["scheme"] == key)

    lines += ["", f"Over these steps theta = 1/2 stays within {100 * worst_modal('theta0.5'):.1f}% with the "
              f"transformed coefficients (the default), against {100 * worst_modal('theta0.5-integral'):.0f}% with "
              f"the integral ones and {100 * worst_modal('theta0.5-left'):.0f}% with left-point ones: in U, "
              "Crank-Nicolson's stiff modes (amplification near -1) relax over several steps and their variance "
              f"lags the target alpha2^2 / (2 |mu| alpha1), which grows {mod['target_growth']:.0f}-fold over [0, 2]; "
              "in V = sqrt(alpha1) / alpha2 U it is fixed. theta = 1 and AOS are off whatever the coefficients (too "
              "little and too much variance in the stiff modes); AOS with left-point coefficients comes close at 20x "
              "only by the cancellation of two errors.",
              "",
             "### The law at large steps",
             "",
             f"Section 5.2 preset on {law['grid']}^2 (T = {law['T']:g}, {law['batch']} samples), and its "
             f"multiplicative variant (lambda2 = 0.5). One Brownian path drives every run; the reference is "
             f"explicit EM at dt = "
             f"{law['dt_ref']:g} ({law['dt_ref'] / law['bound']:.2f} times the explicit bound "
             f"h^2 / (4 max alpha1) = {law['bound']:.4g}) on it. Steps: dt = {law['dt']['20x']:g} "
             f"({ratio['20x']:.1f} times the bound) and dt = {law['dt']['50x']:g} ({ratio['50x']:.1f} times). Per "
             f"sample: final spatial mean minus the reference's (largest |difference| over the samples) and the final "
             f"spatial standard deviation relative to the reference's (range over the samples). Start 'camera': the "
             f"image scaled to [-1, 1] (its blurred remainder dominates the final std); 'flat': u0 = 0, the final "
             f"state is all noise (the noise's law decides the std). Acceptance (recommended scheme, theta = 1/2, at "
             f"20x): |mean difference| <= {TOL_MEAN} and |std difference| <= {100 * TOL_STD:.0f}% for every sample.",
             ""]
    for pname in ("additive", "multiplicative"):
        lines += [f"**{pname} noise**" + (" (the acceptance case)" if pname == "additive" else ""), "",
                  "| scheme | start | reference std | 20x: max abs mean diff | 20x: std diff "
                  "| 50x: max abs mean diff | 50x: std diff | 50x: max abs u "
                  "| Krylov iterations per step, 20x / 50x (mean) | wall 20x / 50x [s] | accepted at 20x |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for sname in ("camera", "flat"):
            for key, label, _, rec in schemes():
                r = {x["steps"]: x for x in law["rows"] if x["problem"] == pname and x["start"] == sname
                     and x["scheme"] == key}
                if not r:
                    continue
                a, b = r["20x"], r["50x"]
                ok = ""
                if rec:
                    good = (a["finite"] and np.max(np.abs(a["dmean"])) <= TOL_MEAN
                            and np.max(np.abs(a["std_rel"])) <= TOL_STD)
                    ok = "**yes**" if good else "**no**"
                its = " / ".join(f"{x['krylov_iterations_per_step'][0]:.1f}" for x in (a, b)) \
                    if a["krylov_iterations_per_step"] else "-"
                lines.append(
                    f"| {label} | {sname} | {_range(a['ref_std'], lambda v: f'{v:.3f}')} | "
                    f"{np.nanmax(np.abs(a['dmean'])) if a['finite'] else float('nan'):.4f} | "
                    f"{_range(a['std_rel'], _pct)} | "
                    f"{np.nanmax(np.abs(b['dmean'])) if b['finite'] else float('nan'):.4f} | "
                    f"{_range(b['std_rel'], _pct)} | {b['max_abs']:.3g} | {its} | "
                    f"{a['wall_s']:.2f} / {b['wall_s']:.2f} | {ok} |")
        lines.append("")
    ref_walls = sorted({(x["problem"], x["start"], round(x["ref_wall_s"], 1)) for x in law["rows"]})
    lines += [f"Reference runs ({round(law['T'] / law['dt_ref'])} explicit EM steps each, numba): "
              + ", ".join(f"{p}/{s} {w:g} s" for p, s, w in ref_walls) + ". Wall times are for 4 samples on one core "
              "of a shared machine, indicative only.", ""]
    lines += notes(law)
    lines += ["### Strong orders", "",
              "| problem | scheme | dt ladder | paths | strong order [95% CI] | theory | within +-0.15 | wall [s] |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        th = "-" if r["theory"] is None else f"{r['theory']:g}"
        within = "report" if r["theory"] is None else ("yes" if abs(r["order"] - r["theory"]) <= 0.15 else "no")
        k = [round(-math.log2(d)) for d in r["dts"]]
        lines.append(f"| {r['problem']} | {LABELS[r['scheme']]} | 2^-{k[0]} ... 2^-{k[-1]} ({len(k)}) | {r['paths']} | "
                     f"{r['order']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {th} | {within} | {r['wall_s']:.1f} |")
    lines += ["", "Heat equation: explicit bound 1/4, so the ladders starting at 2^-1 have their two coarsest steps "
              "above it. Paper SPDE: explicit bound "
              f"{[r for r in rows if r['theory'] is None][0]['bound']:.4g}, so 2^-3 ... 2^-7 is 16 to 1 times the "
              "bound and 2^-8 ... 2^-11 lies inside it (the ladder of the explicit rows above); no theoretical "
              "order (see the notes on the paper SPDE above).", "", END]
    return "\n".join(lines)


def notes(law: dict) -> list[str]:
    """Statements read off the measured rows (nothing typed by hand)."""
    def get(p, s, k, st):
        return [x for x in law["rows"] if x["problem"] == p and x["start"] == s and x["scheme"] == k
                and x["steps"] == st][0]

    def worst(x):
        return float(np.max(np.abs(x["std_rel"]))) if x["finite"] else float("inf")

    out = ["What the rows show (additive noise, flat start: the noise's law decides the std):", ""]
    for st in ("20x", "50x"):
        r = {k: get("additive", "flat", k, st) for k in ("theta0.5", "theta0.5-integral", "theta0.5-left", "theta1",
                                                          "aos", "tamed")}
        out.append(
            f"* {st}: theta = 1/2 misses the reference std by at most {100 * worst(r['theta0.5']):.0f}% "
            f"(with the integral coefficients {100 * worst(r['theta0.5-integral']):.0f}%, with left-point ones "
            f"{100 * worst(r['theta0.5-left']):.0f}%), theta = 1 by {100 * worst(r['theta1']):.0f}% (too low: "
            f"implicit Euler damps the stiff modes' noise), AOS by {100 * worst(r['aos']):.0f}% (too high). Tamed "
            f"EM stays bounded (max |u| {r['tamed']['max_abs']:.3g}) but its final std is "
            f"{_range(r['tamed']['std'], lambda v: f'{v:.3f}')} against "
            f"{_range(r['tamed']['ref_std'], lambda v: f'{v:.3f}')}: bounded is not accurate.")
    em = get("additive", "camera", "em", "50x")
    out += [f"* Explicit EM at 50x: max |u| {em['max_abs']:.3g} from the camera start "
            f"({'finite' if em['finite'] else 'not finite'}).",
            "* The reference itself: explicit EM's stationary variance of a mode is sigma^2 / (|mu| (2 - |mu| dt)), "
            "a little high for the fastest modes even inside the bound. The same reference at 5 times its dt has a "
            "final std " + ", ".join(f"{_range(r['std_rel'], _pct)} ({r['problem']}, {r['start']})"
                                     for r in law["ref_check"]) + " off the one used; the reference's own bias is "
            "smaller by about that factor 5 (EM's weak order 1).", ""]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 32^2, short ladders")
    ap.add_argument("--out", default="docs/validation.md", help="markdown file whose section is (re)written")
    ap.add_argument("--json", default="docs/stiff_solvers.json", help="raw figures")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    mod = modal(args.quick)
    print(f"modal: exact {mod['exact_std']:.5f}; " + ", ".join(f"{r['scheme']} {r['ratio']:.0f}x {100 * r['rel']:+.1f}%"
                                                           for r in mod["rows"]), flush=True)
    law = law_at_large_steps(args.quick)
    rows = orders(args.quick)
    wall = time.perf_counter() - start
    with open(args.json, "w") as f:
        json.dump({"modal": mod, "law": law, "orders": rows, "wall_s": wall, "argv": sys.argv[1:]}, f, indent=1)
    write_section(args.out, SECTION, section(mod, law, rows, wall, args))
    print(f"wrote {args.out} and {args.json} in {wall:.0f} s")


if __name__ == "__main__":
    main()
