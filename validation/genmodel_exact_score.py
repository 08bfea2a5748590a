# ruff: noqa: E402
"""Exact-score sampling on Gaussian data (issue 5 acceptance, with the dt ladder).

Gaussian data N(m, C) on 8x8, the isotropic heat chain (paper_isotropic(8) schedules on T = 1,
conservative stencil), exact chain score and exact Gaussian prior; the predictor-corrector sampler
with steps = K (Delta = dt). Prints, per dt and correlation length l, the relative Frobenius error
of the sample covariance, its expected sampling part, the bias estimate sqrt(err^2 - sampling^2)
and the relative error of the sample mean.

    python validation/genmodel_exact_score.py [--n 16384] [--dts 0.01 0.005 0.0025] [--ells 0 2]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: see genmodel/__init__.py

import argparse
import time

import numpy as np
import torch

import spdekit
from genmodel import GaussianDataScore, GaussianPrior, SPDEProcess, sample

H = 8


def problem():
    yy, xx = np.meshgrid(np.arange(H), np.arange(H), indexing="ij")
    m = 0.5 * np.exp(-((yy - 3.5) ** 2 + (xx - 3.5) ** 2) / 8) - 0.2
    d = np.hypot(yy.ravel()[:, None] - yy.ravel()[None], xx.ravel()[:, None] - xx.ravel()[None])
    return m, 0.09 * np.exp(-d / 2.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--dts", type=float, nargs="+", default=[0.01, 0.005, 0.0025])
    ap.add_argument("--ells", type=float, nargs="+", default=[0.0, 2.0])
    ap.add_argument("--corrector-steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m, C = problem()
    print(f"n = {a.n}; columns: dt, l, rel. Frobenius error of C, sampling part, bias estimate, rel. mean error, s")
    for ell in a.ells:
        for dt in a.dts:
            spde = spdekit.AnisotropicSPDE.paper_isotropic(H, 1.0, stencil="conservative", correlation_length=ell)
            p = SPDEProcess(spde, 1.0, dt)
            prior = GaussianPrior.from_moments(*p.law((H, H)).propagate(m, C, p.n_steps))
            t0 = time.perf_counter()
            x = sample(p, GaussianDataScore(p, m, C), a.n, prior=prior, seed=0, dtype=torch.float64,
                       corrector_steps=a.corrector_steps).numpy().reshape(a.n, -1)
            secs = time.perf_counter() - t0
            err = np.linalg.norm(np.cov(x.T) - C) / np.linalg.norm(C)
            dg = np.diag(C)
            samp = np.sqrt((np.outer(dg, dg) + C**2).sum() / a.n) / np.linalg.norm(C)
            bias = np.sqrt(max(err**2 - samp**2, 0.0))
            merr = np.linalg.norm(x.mean(0) - m.ravel()) / np.linalg.norm(m)
            print(f"{dt:8.4f} {ell:4.1f}  {err:.4f}  {samp:.4f}  {bias:.4f}  {merr:.4f}  {secs:6.1f}", flush=True)


if __name__ == "__main__":
    main()
