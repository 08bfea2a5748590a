"""Correlated Gaussian fields with exponential covariance exp(-r/l): spdekit's exact circulant
embedding vs gstools (randomisation method "RandMeth" and its "Fourier" generator).

Throughput: fields per second on 256x256 and 1024x1024 (l = 8), one process, alternating.
Accuracy (on 64x64, l = 8, where gstools is affordable): for each method, from independent fields,
the ensemble covariance along x at lags 1..16 against exp(-r/l), as z-scores (error / standard
error, so |z| of a few is sampling noise, larger is bias), and the excess kurtosis of the one-point
marginal (0 for a Gaussian field; RandMeth's finite sum of random cosines is not Gaussian, the
Fourier generator is periodic with a truncated spectrum).

    python benchmarks/noise.py [--quick] [--json docs/perf/noise.json]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _harness import machine, write_json

from spdekit import QWienerNoise
from spdekit.random import SampleStreams

ELL = 8.0
LAGS = np.arange(1, 17)


def _ours(seed):
    noise = QWienerNoise(ELL)
    streams = SampleStreams(seed, 1)

    def draw(shape):
        return noise.sample((1, *shape), streams)[0]

    return draw


def _gstools(generator, seed):
    import gstools as gs

    model = gs.Exponential(dim=2, var=1.0, len_scale=ELL)  # correlation exp(-r / len_scale)
    counter = {"i": seed}

    def draw(shape):
        H, W = shape
        counter["i"] += 1
        if generator == "RandMeth":
            srf = gs.SRF(model, generator="RandMeth", seed=counter["i"])
        else:  # periodic Fourier generator: period = the domain, modes up to the grid's resolution
            srf = gs.SRF(model, generator="Fourier", period=[H, W], mode_no=[min(H, 64), min(W, 64)],
                         seed=counter["i"])
        return srf((np.arange(float(H)), np.arange(float(W))), mesh_type="structured")

    return draw


def throughput(draw, shape, budget_s):
    """Fields per second: as many draws as fit in the budget (at least one)."""
    draw(shape)  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        draw(shape)
        n += 1
        if time.perf_counter() - t0 > budget_s:
            break
    return n / (time.perf_counter() - t0)


def accuracy(draw, n_fields, shape=(64, 64)):
    H, W = shape
    per_field, m2, m4 = [], [], []
    for _ in range(n_fields):
        f = np.asarray(draw(shape), dtype=np.float64)
        per_field.append([np.mean(f[:, :-k] * f[:, k:]) for k in LAGS])
        m2.append(np.mean(f**2))
        m4.append(np.mean(f**4))
    c = np.asarray(per_field)
    est = c.mean(axis=0)
    se = c.std(axis=0, ddof=1) / np.sqrt(len(c))
    target = np.exp(-LAGS / ELL)
    excess = float(np.mean(m4) / np.mean(m2) ** 2 - 3.0)  # zero-mean fields: pooled excess kurtosis
    return {"n_fields": n_fields, "cov_estimate": est.tolist(), "cov_target": target.tolist(),
            "abs_error": np.abs(est - target).tolist(), "z": ((est - target) / se).tolist(),
            "max_abs_error": float(np.abs(est - target).max()), "max_abs_z": float(np.abs((est - target) / se).max()),
            "excess_kurtosis": excess}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json")
    a = p.parse_args(argv)
    methods = {"spdekit (circulant embedding)": _ours(1), "gstools RandMeth": _gstools("RandMeth", 1),
               "gstools Fourier": _gstools("Fourier", 1)}
    rows = {}
    for shape in ((256, 256), (1024, 1024)):
        for name, draw in methods.items():
            if name == "gstools Fourier" and shape[0] > 256:
                continue  # minutes per field at 1024^2
            rows.setdefault(name, {})[f"{shape[0]}x{shape[1]} fields/s"] = throughput(draw, shape, 1.0 if a.quick
                                                                                      else 3.0)
    n_acc = {"spdekit (circulant embedding)": 2000, "gstools RandMeth": 60 if a.quick else 300,
             "gstools Fourier": 20 if a.quick else 100}
    acc = {name: accuracy(draw, n_acc[name]) for name, draw in methods.items()}

    base = rows["spdekit (circulant embedding)"]
    print(f"exponential covariance, l = {ELL:g}")
    print(f"{'method':32s} {'256^2 fields/s':>15s} {'1024^2 fields/s':>16s} {'max|cov err|':>13s} {'max|z|':>8s} "
          f"{'excess kurt.':>13s}")
    for name in methods:
        r, q = rows[name], acc[name]
        f1 = r.get("1024x1024 fields/s")
        f1 = "not run" if f1 is None else f"{f1:.3g}"
        print(f"{name:32s} {r['256x256 fields/s']:15.3g} {f1:>16} "
              f"{q['max_abs_error']:13.4f} {q['max_abs_z']:8.1f} {q['excess_kurtosis']:13.3f}")
    for name in methods:
        if name != "spdekit (circulant embedding)":
            print(f"spdekit / {name} throughput: 256^2 "
                  f"{base['256x256 fields/s'] / rows[name]['256x256 fields/s']:.0f}x" +
                  (f", 1024^2 {base['1024x1024 fields/s'] / rows[name]['1024x1024 fields/s']:.0f}x"
                   if "1024x1024 fields/s" in rows[name] else ""))
    write_json(a.json, {"benchmark": "noise", "machine": machine(), "ell": ELL, "throughput": rows,
                        "accuracy_64x64": acc})


if __name__ == "__main__":
    main()
