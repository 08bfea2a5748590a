"""One step of the stiff-stable solvers (spdekit.LinearlyImplicitTheta, spdekit.AOSEulerMaruyama) on the
paper's anisotropic preset, contenders side by side in one process: the numba kernels, the numpy
reference (the readable definition they are tested equal to) and, for scale, one explicit step
(EulerMaruyama and TamedEulerMaruyama, numba) of the same state. Plus the numba step's parts: the frozen
weights (the drift's diffusivities written out per link), the AOS Thomas solves, one BiCGSTAB solve.

The state is the 'camera' image scaled to [-1, 1] at t = 1.5 (alpha1 near its largest value, where
the stiff solvers are used), dt = 1 and 16 times the explicit bound b = h^2 / (4 max alpha1); the
increment is white noise of variance dt. A timing is a burst of BURST consecutive steps of one
contender; contenders alternate (benchmarks/_harness.py).

    python benchmarks/stiff_step.py [--quick] [--repeats 5] [--json docs/perf/stiff_step.json]
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
from _harness import alternate, machine, write_json

import spdekit as sk
from spdekit.backends import get_backend
from spdekit.backends import implicit_numba as JN
from spdekit.implicit import step_plan

SIZES = [(4, 128), (1, 512)]  # (batch, N)
BURST = 3


def _state(B, n):
    from skimage import data, transform

    img = transform.resize(data.camera().astype(np.float64) / 255.0, (n, n), anti_aliasing=True)
    return np.repeat((2.0 * img - 1.0)[None, None], B, axis=0)


def run(B, n, mult, repeats, with_numpy=True):
    spde = sk.AnisotropicSPDE.paper_anisotropic(n)
    b = spde.stability_bound(0.0, 2.0)
    dt, t = mult * b, 1.5
    u = _state(B, n)
    dW = np.sqrt(dt) * np.random.default_rng(0).standard_normal(u.shape)
    be = get_backend("numba", u)
    theta, aos = sk.LinearlyImplicitTheta(), sk.AOSEulerMaruyama()
    em, tamed = sk.EulerMaruyama(), sk.TamedEulerMaruyama()
    coef = spde.coefficients(t, B)
    out, work = np.empty_like(u), np.empty_like(u)
    plan = step_plan(spde, t, dt, B)
    c = plan.coef
    w = JN.frozen_weights(u, c.alpha1, c.inv_lam1, spde.stencil, spde.spacing, c.diffusivity1)
    rhs = dt * be.drift(u, c.alpha1, c.inv_lam1, spde.stencil, spde.spacing, diffusivity=c.diffusivity1) + 0.01 * dW
    iters = theta.step_info(spde, t, u, dt, dW, backend=be, checked=True)[2]["iterations"]
    fns = {
        "theta (numba)": lambda: theta.step(spde, t, u, dt, dW, backend=be, checked=True),
        "AOS (numba)": lambda: aos.step(spde, t, u, dt, dW, backend=be, checked=True),
        "EM (numba)": lambda: em.step(spde, t, u, dt, dW, backend=be, checked=True, coef=coef, out=out, work=work),
        "tamed EM (numba)": lambda: tamed.step(spde, t, u, dt, dW, backend=be, checked=True, coef=coef, out=out,
                                               work=work),
        "frozen weights (numba)": lambda: JN.frozen_weights(u, c.alpha1, c.inv_lam1, spde.stencil, spde.spacing,
                                                            c.diffusivity1),
        "AOS Thomas solves (numba)": lambda: JN.aos_solve(w, rhs, float(dt) / (1.0 - 0.5 * plan.shift)),
        "BiCGSTAB solve (numba)": lambda: JN.solve(w, rhs, 0.5 * dt * np.ones(B), "bicgstab"),
    }
    if with_numpy:
        fns["theta (numpy reference)"] = lambda: theta.step(spde, t, u, dt, dW, backend="numpy", checked=True)
        fns["AOS (numpy reference)"] = lambda: aos.step(spde, t, u, dt, dW, backend="numpy", checked=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sk.StabilityWarning)
        res = alternate(fns, repeats, burst=BURST)
    return {"batch": B, "size": n, "dt_over_bound": mult, "t": t, "burst": BURST,
            "theta_iterations_mean": float(np.mean(iters)),
            "seconds_per_step": {k: v["median"] for k, v in res.items()},
            "min_seconds_per_step": {k: v["min"] for k, v in res.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="64^2 only, 2 repeats")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args(argv)
    sizes = [(2, 64)] if a.quick else SIZES
    rows = []
    for B, n in sizes:
        for mult in (1.0, 16.0):
            r = run(B, n, mult, 2 if a.quick else a.repeats)
            rows.append(r)
            s = r["seconds_per_step"]
            print(f"{B}x{n}^2, dt = {mult:g} b (theta: {r['theta_iterations_mean']:.1f} BiCGSTAB iterations): "
                  + ", ".join(f"{k} {1e3 * v:.3g} ms" for k, v in s.items()), flush=True)
    if a.json:
        write_json(a.json, {"benchmark": "stiff_step", "machine": machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
