"""SDE ensembles of 10^5 paths: spdekit.simulate vs torchsde.sdeint (method "euler") on the CPU.

Problems (spdekit.problems): geometric Brownian motion du = a u dt + b u dW (a = 0.5, b = 0.7) and
the cubic problem du = -u(1 - u^2)/4 dt + (1 - u^2)/2 dW, u0 = 0.5, T = 1, dt = 2^-8 (256 steps),
float64, Ito, diagonal noise. Both contenders run plain Euler-Maruyama and draw their own normals.
Reported: seconds per full run (median of alternating repeats), the ratio, and the final-time mean
of each (a sanity check: the exact E[u_T] of GBM is u0 e^{a T}; the 10^5-path Monte Carlo error is
about 0.3%).

    python benchmarks/sde_ensemble.py [--paths 100000] [--json docs/perf/sde_ensemble.json]
"""

from __future__ import annotations

import argparse

import numpy as np
from _harness import alternate, machine, write_json

import spdekit as sk
from spdekit.problems import CubicSDE, GeometricBrownianMotion

T, DT = 1.0, 2.0**-8


class _TorchSDE:
    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, drift, diffusion):
        self.f_, self.g_ = drift, diffusion

    def f(self, t, y):
        return self.f_(y)

    def g(self, t, y):
        return self.g_(y)


def contenders(name, n_paths):
    import torch
    import torchsde

    if name == "GBM":
        prob, u0 = GeometricBrownianMotion(a=0.5, b=0.7), 1.0
        f, g = (lambda y: 0.5 * y), (lambda y: 0.7 * y)
    else:
        prob, u0 = CubicSDE(), 0.5
        f, g = (lambda y: -0.25 * y * (1 - y * y)), (lambda y: 0.5 * (1 - y * y))
    y0_np = np.full((n_paths, 1), u0)
    y0_t = torch.full((n_paths, 1), u0, dtype=torch.float64)
    ts = torch.tensor([0.0, T], dtype=torch.float64)
    sde = _TorchSDE(f, g)
    out = {}

    def run_spdekit():
        out["spdekit"] = sk.simulate(prob, y0_np, 0.0, T, DT, solver=sk.EulerMaruyama(), seed=1).final

    def run_torchsde():
        with torch.no_grad():
            out["torchsde"] = torchsde.sdeint(sde, y0_t, ts, method="euler", dt=DT)[-1].numpy()

    return {"spdekit": run_spdekit, "torchsde (euler)": run_torchsde}, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paths", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json")
    a = p.parse_args(argv)
    rows = []
    lines = [f"{'problem':8s} {'contender':18s} {'s per run':>10s} {'ratio':>7s} {'mean u_T':>10s}"]
    for name in ("GBM", "cubic"):
        fns, out = contenders(name, a.paths)
        res = alternate(fns, a.repeats, no_warmup=("torchsde (euler)",))  # torchsde has no compile step
        base = res["spdekit"]["median"]
        for k, r in res.items():
            key = "spdekit" if k == "spdekit" else "torchsde"
            mean = float(np.mean(out[key]))
            lines.append(f"{name:8s} {k:18s} {r['median']:10.3f} {r['median'] / base:6.1f}x {mean:10.4f}")
            rows.append({"problem": name, "contender": k, "seconds": r["median"],
                         "ratio_to_spdekit": r["median"] / base,
                         "final_mean": mean})
    lines.append(f"exact E[u_T] of GBM: {np.exp(0.5 * T):.4f}; {a.paths} paths, dt = {DT}, T = {T}")
    table = "\n".join(lines)
    print(table)
    write_json(a.json, {"benchmark": "sde_ensemble", "machine": machine(), "rows": rows, "table": table,
                        "paths": a.paths})


if __name__ == "__main__":
    main()
