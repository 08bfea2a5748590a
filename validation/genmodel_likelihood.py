# ruff: noqa: E402
"""Likelihoods through the probability-flow ODE (issue 22, item 4): exactness on Gaussian data, and digits.

1. Gaussian data N(m, C) on 8x8 (validation/genmodel_exact_score.py's problem and chains, K = 1056),
   exact chain score and exact prior: the mean NLL (bits/dim) of 512 held-out draws with the exact
   divergence against the analytic -log2 N(x; m, C) / D, and Hutchinson's estimate against the exact one
   (the mean of the per-point differences and its standard error).
2. Trained digits models (16 px, K = 2000): bits/dim of the 360 held-out digits (Hutchinson, one probe per
   image, K Heun steps), for the models given with ``--models NAME=PATH``.

    python validation/genmodel_likelihood.py --models shipped=genmodel/assets/digits16_anisotropic.pt \\
        ve_sde=/work/t1runs/full/ve_sde_16px_seed0/model.pt
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "validation"))

from genmodel_exact_score import H, K, T, chains, gaussian_data  # noqa: E402

from genmodel import GaussianPrior, SPDEProcess  # noqa: E402
from genmodel.exact import GaussianDataScore  # noqa: E402
from genmodel.likelihood import log_likelihood  # noqa: E402


def gaussian_check(chain: str, n: int, steps: int) -> dict:
    m, C = gaussian_data()
    p = SPDEProcess(chains()[chain], T, T / K)
    prior = GaussianPrior.from_moments(*p.law((H, H)).propagate(m, C, p.n_steps))
    score = GaussianDataScore(p, m, C)
    x = m.ravel() + np.random.default_rng(7).standard_normal((n, H * H)) @ np.linalg.cholesky(C).T
    L = np.linalg.cholesky(C)
    y = np.linalg.solve(L, (x - m.ravel()).T)
    logp = -0.5 * (y**2).sum(0) - np.log(np.diag(L)).sum() - 0.5 * H * H * math.log(2 * math.pi)
    true = -logp / (H * H * math.log(2))
    xt = torch.as_tensor(x.reshape(n, 1, H, H))
    out = {"chain": chain, "n": n, "steps": steps, "analytic": float(true.mean())}
    for exact in (True, False):
        t0 = time.perf_counter()
        b = log_likelihood(p, score, xt, steps=steps, exact_trace=exact, seed=0, prior=prior, dtype=torch.float64,
                           batch_size=512)
        key = "exact" if exact else "hutchinson"
        out[key] = float(b.mean())
        out[key + "_seconds"] = time.perf_counter() - t0
        out[key + "_values"] = b
    out["exact_minus_analytic"] = out["exact"] - out["analytic"]
    d = out["hutchinson_values"] - out["exact_values"]
    out["hutchinson_minus_exact"] = float(d.mean())
    out["hutchinson_se"] = float(d.std(ddof=1) / math.sqrt(n))
    return out


def digits(name: str, path: str, steps: int | None) -> str:
    from genmodel.data import load_dataset
    from genmodel.runs import load_model

    model, process, prior, ck = load_model(path)
    _, heldout = load_dataset(ck["config"]["data"])
    t0 = time.perf_counter()
    try:
        b = log_likelihood(process, model, heldout, steps=steps, seed=0, prior=prior, batch_size=360)
    except FloatingPointError as exc:
        return f"| {name} | {path} | diverged: {exc} | | {time.perf_counter() - t0:.0f} |"
    return (f"| {name} | {path} | {b.mean():.3f} ± {b.std(ddof=1) / math.sqrt(len(b)):.3f} | {len(b)} | "
            f"{time.perf_counter() - t0:.0f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--steps", type=int, default=K // 8, help="Heun steps for the Gaussian check")
    ap.add_argument("--chains", nargs="*", default=["heat", "ve_sde"], choices=list(chains()),
                    help="chains of the Gaussian check (none: only --models)")
    ap.add_argument("--models", nargs="*", default=[], help="NAME=PATH of digits models")
    ap.add_argument("--digits-steps", type=int, help="Heun steps for the digits models (default K)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore")
    if a.chains:
        print("| chain | n | Heun steps | analytic | exact trace (diff) | Hutchinson - exact (SE) | "
              "s (exact / Hutchinson) |")
        print("|---|---|---|---|---|---|---|")
    for chain in a.chains:
        r = gaussian_check(chain, a.n, a.steps)
        print(f"| {chain} | {r['n']} | {r['steps']} | {r['analytic']:.4f} | {r['exact']:.4f} "
              f"({r['exact_minus_analytic']:+.4f}) | {r['hutchinson_minus_exact']:+.4f} ({r['hutchinson_se']:.4f}) | "
              f"{r['exact_seconds']:.0f} / {r['hutchinson_seconds']:.0f} |", flush=True)
    if a.models:
        print("\n| model | checkpoint | bits/dim (mean ± SE) | images | s |\n|---|---|---|---|---|")
        for spec in a.models:
            name, path = spec.split("=", 1)
            print(digits(name, path, a.digits_steps), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
