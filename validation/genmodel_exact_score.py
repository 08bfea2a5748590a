# ruff: noqa: E402
"""Exact-score validation of every predictor at the step counts that are used (issue 22, item 5).

8x8 images, T = 2, K = 1056 chain steps (dt = T / K: at K / 8 predictor steps Delta * 8 max alpha1 = 1.94,
the ratio of Table 1's 264 steps for a 2,000-step chain at 16 px). Three linear chains on the conservative
stencil with white noise:

* ``ve_sde``: pure noise (eq. 13), alpha2 geometric 0.01 -> 2 (Table 1's VE-SDE);
* ``heat``: the isotropic heat chain of eq. (17) (paper_isotropic(8): alpha1 0.5 -> 16, alpha2 0.01 -> 0.5);
* ``heat_a2``: the same with alpha2 0.01 -> 2.

Two data laws, each with its exact chain score (:mod:`genmodel.exact`) and the exact law of U_T as prior:

* ``gaussian``: N(m, C), m a centred bump, C = 0.09 exp(-d / 2) (correlated DCT modes: the samplers'
  reference, which keeps independent modes, is not the data law, so the residual is small but not zero);
* ``mixture``: 0.3 N(m1, C1) + 0.7 N(m2, C2), far apart (means 0.47 to 1.04 apart per pixel; misassignment by
  the nearest-component rule under the true law: 0 in 10^6 draws, reported with the table): the exact score
  is the posterior-weighted mixture of the component scores, far from any Gaussian reference.

Every predictor (em, exponential, ode, exponential_ode) at K, K/2, K/4, K/8, K/16 steps, no corrector,
n = 16,384 samples, seed 0. Reported: the relative Frobenius error of the sample covariance against its
sampling floor sqrt(sum_ij (C_ii C_jj + C_ij^2) / n) / |C| (Gaussian data), the relative error of the mean;
for the mixture the fraction of samples nearest to component 1 (highest posterior under the data law)
with its z-score against 0.3 (standard error sqrt(0.3 * 0.7 / n)) and each component's covariance error
against its floor (n_i samples). Writes the table between the markers in ``docs/genmodel.md``.

    python validation/genmodel_exact_score.py [--n 16384] [--threads 1] [--doc docs/genmodel.md]
    python validation/genmodel_exact_score.py --chains heat --data gaussian --predictors exponential --fractions 8
    python validation/genmodel_exact_score.py --json out/exact.json   # resumable: rows in the file are kept

With ``--json`` every row is written to the file as soon as it is measured and rows already there are not
measured again, so an interrupted run continues where it stopped; the table holds every row in the file.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: see genmodel/__init__.py

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "validation"))

from table1 import commit  # noqa: E402

import spdekit  # noqa: E402
from genmodel import GaussianPrior, SPDEProcess, sample  # noqa: E402
from genmodel.exact import GaussianDataScore, GaussianMixtureScore  # noqa: E402
from genmodel.samplers import PREDICTORS  # noqa: E402
from spdekit import schedules as S  # noqa: E402

H, T, K = 8, 2.0, 1056
FRACTIONS = (1, 2, 4, 8, 16)
BEGIN, END = "<!-- exact-score table: begin (validation/genmodel_exact_score.py) -->", "<!-- exact-score table: end -->"


def chains() -> dict:
    return {
        "ve_sde": spdekit.AnisotropicSPDE.pure_noise(S.Geometric(0.01, 2.0, T), stencil="conservative"),
        "heat": spdekit.AnisotropicSPDE.paper_isotropic(H, T, stencil="conservative"),
        "heat_a2": spdekit.AnisotropicSPDE(alpha1=S.Geometric(0.5, 2.0 * H, T), lambda1=float("inf"),
                                           alpha2=S.Geometric(0.01, 2.0, T), lambda2=float("inf"),
                                           stencil="conservative"),
    }


def _grid():
    yy, xx = np.meshgrid(np.arange(H), np.arange(H), indexing="ij")
    d = np.hypot(yy.ravel()[:, None] - yy.ravel()[None], xx.ravel()[:, None] - xx.ravel()[None])
    return yy, xx, d


def gaussian_data():
    yy, xx, d = _grid()
    m = 0.5 * np.exp(-((yy - 3.5) ** 2 + (xx - 3.5) ** 2) / 8) - 0.2
    return m, 0.09 * np.exp(-d / 2.0)


def mixture_data():
    yy, xx, d = _grid()
    bump = 0.5 * np.exp(-((yy - 3.5) ** 2 + (xx - 3.5) ** 2) / 8)
    m1, m2 = bump + 0.4 - 0.25, -0.4 + 0.1 * np.cos(np.pi * xx / 7)
    return (0.3, 0.7), (m1, m2), (0.05 * np.exp(-d / 2.0), 0.03 * np.exp(-d / 1.0))


def rel_cov_error(x, C):
    n = x.shape[0]
    err = np.linalg.norm(np.cov(x.T) - C) / np.linalg.norm(C)
    dg = np.diag(C)
    floor = np.sqrt((np.outer(dg, dg) + C**2).sum() / n) / np.linalg.norm(C)
    return float(err), float(floor)


def run(process, data: str, predictor: str, steps: int, n: int) -> dict:
    if data == "gaussian":
        m, C = gaussian_data()
        score = GaussianDataScore(process, m, C)
        prior = GaussianPrior.from_moments(*process.law((H, H)).propagate(m, C, process.n_steps))
    else:
        w, ms, Cs = mixture_data()
        score = GaussianMixtureScore(process, w, ms, Cs)
        prior = score.prior()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", spdekit.StabilityWarning)
            x = sample(process, score, n, steps=steps, predictor=predictor, corrector="none", prior=prior, seed=0,
                       dtype=torch.float64)
    except FloatingPointError as exc:
        return {"diverged": str(exc).split(":")[0], "seconds": time.perf_counter() - t0}
    secs = time.perf_counter() - t0
    x = x.numpy().reshape(n, -1)
    out = {"seconds": secs, "max_abs": float(np.abs(x).max())}
    if not np.isfinite(x).all() or out["max_abs"] > 1e3:
        out["diverged"] = f"max |u| = {out['max_abs']:.3g}"
        return out
    if data == "gaussian":
        out["cov_err"], out["floor"] = rel_cov_error(x, C)
        out["mean_err"] = float(np.linalg.norm(x.mean(0) - m.ravel()) / np.linalg.norm(m))
        return out
    lab = np.argmax(score.data.component_log_densities(x) + np.log(score.data.weights)[None], 1)
    frac = float((lab == 0).mean())
    out["weight1"] = frac
    out["weight_z"] = float((frac - w[0]) / np.sqrt(w[0] * w[1] / n))
    for i in range(2):
        if (lab == i).sum() > 1:
            out[f"cov_err{i + 1}"], out[f"floor{i + 1}"] = rel_cov_error(x[lab == i], Cs[i])
    return out


def misassignment(n: int = 1_000_000) -> float:
    w, ms, Cs = mixture_data()
    from genmodel.exact import GaussianMixture

    mix = GaussianMixture(w, ms, Cs)
    x, lab = mix.sample(n, np.random.default_rng(123), torch.float64, return_labels=True)
    got = np.argmax(mix.component_log_densities(x) + np.log(mix.weights)[None], 1)
    return float((got != lab).mean())


def fmt_row(chain, data, pred, frac, r):
    steps = K // frac
    nfe = 2 * steps - 1 if pred == "ode" else steps
    head = f"| {chain} | {data} | {pred} | K/{frac} = {steps} | {nfe} |"
    if "diverged" in r:
        return head + f" diverged ({r['diverged']}) |" + " |" * 2
    if data == "gaussian":
        return head + (f" {100 * r['cov_err']:.1f} % (floor {100 * r['floor']:.1f} %) | {100 * r['mean_err']:.1f} % "
                       f"| {r['seconds']:.0f} |")
    nan = float("nan")
    comps = " / ".join(f"{100 * r.get(f'cov_err{i}', nan):.1f} % ({100 * r.get(f'floor{i}', nan):.1f})" for i in (1, 2))
    return head + f" {r['weight1']:.4f} (z = {r['weight_z']:+.1f}); {comps} | - | {r['seconds']:.0f} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--chains", nargs="+", default=list(chains()), choices=list(chains()))
    ap.add_argument("--data", nargs="+", default=["gaussian", "mixture"], choices=["gaussian", "mixture"])
    ap.add_argument("--predictors", nargs="+", default=list(PREDICTORS), choices=list(PREDICTORS))
    ap.add_argument("--fractions", type=int, nargs="+", default=list(FRACTIONS), help="steps = K / fraction")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--doc", default=str(ROOT / "docs" / "genmodel.md"),
                    help="markdown file whose marked section gets the table ('' to only print)")
    ap.add_argument("--json", help="raw results: kept after every row, and rows already in it are not rerun")
    ap.add_argument("--report", action="store_true", help="measure nothing: the table of the rows in --json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    saved = Path(a.json) if a.json else None
    results = json.loads(saved.read_text()) if saved is not None and saved.exists() else []
    def key(r):
        return r["chain"], r["data"], r["predictor"], r["steps"]

    done = {key(r) for r in results}
    for cname, spde in chains().items():
        if cname not in a.chains:
            continue
        process = SPDEProcess(spde, T, T / K)
        for data in a.data:
            for pred in a.predictors:
                for frac in a.fractions:
                    if (cname, data, pred, K // frac) in done or a.report:
                        continue
                    r = run(process, data, pred, K // frac, a.n)
                    results.append({"chain": cname, "data": data, "predictor": pred, "steps": K // frac, **r})
                    print(fmt_row(cname, data, pred, frac, r), flush=True)
                    if saved is not None:  # merged with rows another run saved meanwhile, written atomically
                        keys = {key(x) for x in results}
                        other = json.loads(saved.read_text()) if saved.exists() else []
                        results += [x for x in other if key(x) not in keys]
                        tmp = saved.with_suffix(f".{os.getpid()}.tmp")
                        tmp.write_text(json.dumps(results, indent=1))
                        tmp.replace(saved)
    order = {c: i for i, c in enumerate(chains())}
    keep = [r for r in results if r["chain"] in a.chains and r["data"] in a.data and r["predictor"] in a.predictors
            and K // r["steps"] in a.fractions]
    keep.sort(key=lambda r: (order[r["chain"]], a.data.index(r["data"]), a.predictors.index(r["predictor"]),
                             -r["steps"]))
    rows = [fmt_row(r["chain"], r["data"], r["predictor"], K // r["steps"], r) for r in keep]
    wall = sum(r["seconds"] for r in keep) / 60
    mis = misassignment() if "mixture" in a.data else None
    table = [
        BEGIN,
        f"Generated by `python validation/genmodel_exact_score.py {' '.join(sys.argv[1:])}` at commit {commit()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores visible, {a.threads} torch thread(s), sampling {wall:.0f} min in all. "
        f"n = {a.n} samples per row, "
        f"8x8, T = {T}, K = {K}, no corrector, exact chain score and exact prior (module docstring)."
        + (f" Mixture: nearest-component misassignment under the true law {mis:.1e} (10^6 draws)." if mis is not None
           else ""),
        "",
        "| chain | data | predictor | steps | NFE | covariance error (Gaussian) / weight of component 1 (0.3) and "
        "component covariance errors (floors) (mixture) | mean error | s |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        END,
    ]
    text = "\n".join(table)
    print(text)
    if a.doc:
        doc = Path(a.doc)
        src = doc.read_text()
        if BEGIN in src and END in src:
            src = src[:src.index(BEGIN)] + text + src[src.index(END) + len(END):]
        else:
            src = src.rstrip() + "\n\n" + text + "\n"
        doc.write_text(src)
    return 0


if __name__ == "__main__":
    sys.exit(main())
