"""Which SDEdit inputs make the shipped anisotropic model's reverse chain run away (docs/genmodel.md,
stroke2img).

Pushes 64 held-out digits, transformed in several ways, to t0 = 0.8 with the model's own chain and
reverses them with the default sampler (the model's 500 steps, EM + 1 Langevin step), two seeds each,
and prints the fraction of outputs with a pixel outside [-1.5, 1.5] before clipping
(:data:`genmodel.stroke.OUTSIDE`). About 8 minutes on one core.

    python validation/stroke_inputs.py [--ckpt genmodel/assets/digits16_anisotropic.pt] [--n 64]
    python validation/stroke_inputs.py --bands [--seed 1]      # where a runaway grows (below)
    python validation/stroke_inputs.py --sweep CKPT [CKPT ...]   # models x t0 in {0.4, 0.8, 1.2, 1.6}

``--bands``: one run of the default strokes (seed ``--seed``), recording at every network call the state,
the network's score s and the Gaussian reference's score s_ref; prints, for the runs that end outside and
for the others, the mean energy of the state, of the network's residual s - s_ref and of s_ref in four
bands of DCT-II modes (frequency index sum ky + kx in [0, 8), [8, 16), [16, 24), [24, 31)) along the
reverse run. About 30 s on one core.

``--sweep``: for each checkpoint, the default strokes at t0 = 0.4, 0.8, 1.2, 1.6, 500 reverse steps over
[0, T] (EM + 1 Langevin step, or ``--predictor exponential``), seeds ``--seeds``: the fraction of outputs
outside and of confident ones (the shipped classifier, > 0.9). About 3 minutes per checkpoint on one core.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from genmodel.data import load_digits
from genmodel.runs import load_model, score_function
from genmodel.samplers import gaussian_reference
from genmodel.stroke import OUTSIDE, make_strokes, sdedit_spde
from spdekit.spectral import from_modes, to_modes


def band_projection(x: torch.Tensor, reference, tau: float = 1e-5) -> torch.Tensor:
    """x with its DCT-II modes whose data variance is below tau * (the largest) set to the data mean."""
    m0, v0 = (np.asarray(a) for a in reference.marginal(0))
    z = np.asarray(to_modes(np.asarray(x, dtype=np.float64)))
    z = np.where(v0 >= tau * v0.max(), z, m0)
    return torch.as_tensor(np.asarray(from_modes(z)), dtype=torch.float32)


BANDS = ((0, 8), (8, 16), (16, 24), (24, 31))


def band_energies(z: np.ndarray, sel: np.ndarray) -> list[float]:
    """Mean over the selected samples of the energy of modes z (B, 1, H, W) in each band of BANDS."""
    fy, fx = np.meshgrid(np.arange(z.shape[-2]), np.arange(z.shape[-1]), indexing="ij")
    e = (z[sel, 0] ** 2).mean(0)
    return [float(e[(fy + fx >= lo) & (fy + fx < hi)].sum()) for lo, hi in BANDS]


def bands(process, score, reference, strokes, t0: float, steps: int, seed: int) -> list[dict]:
    """Band energies of state, network residual and reference score along one SDEdit run (module doc)."""
    rec = []

    def recording(t, u):
        s = score(t, u)
        k = int(round(float(t[0]) / process.dt))
        rec.append((float(t[0]), u.double().numpy().copy(), s.double().numpy(),
                    np.asarray(reference.score(k, u.double().numpy()))))
        return s

    out = sdedit_spde(process, recording, strokes, t0, steps=steps, seed=seed)
    bad = (out.abs() > OUTSIDE).flatten(1).any(1).numpy()
    rows = []
    for i in sorted({0, len(rec) // 4, len(rec) // 2, 3 * len(rec) // 4, len(rec) - 1}):
        t, u, s, sr = rec[i]
        z = {"state": to_modes(u, "conservative"), "residual": to_modes(s - sr, "conservative"),
             "reference score": to_modes(sr, "conservative")}
        rows.append({"t": t, **{f"{name}, {who}": band_energies(np.asarray(v), sel) for name, v in z.items()
                                for who, sel in (("outside", bad), ("inside", ~bad))}})
    return [{"outside": np.flatnonzero(bad).tolist()}] + rows


def sweep(ckpts, seeds, n: int = 64, t0s=(0.4, 0.8, 1.2, 1.6), steps: int = 500,
          predictor: str = "em") -> list[dict]:
    """Outside and confident fractions of SDEdit from the default strokes, per checkpoint, t0 and seed."""
    from genmodel.metrics import load_classifier
    from genmodel.stroke import stroke_scores

    classifier = load_classifier("genmodel/assets/digits_classifier_16.pt")
    strokes = make_strokes(load_digits(16, "test")[:n], 3, 1.0)
    rows = []
    for path in ckpts:
        model, process, _, _ = load_model(path)
        score = score_function(model)
        for t0 in t0s:
            row = {"checkpoint": str(path), "predictor": predictor, "t0": t0}
            for seed in seeds:
                out = sdedit_spde(process, score, strokes, t0, steps=steps, seed=seed, predictor=predictor)
                res = stroke_scores(out, strokes, classifier)
                row[f"outside_seed{seed}"] = res["outside_fraction"]
                row[f"confident_seed{seed}"] = res["confident_fraction"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="genmodel/assets/digits16_anisotropic.pt")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--t0", type=float, default=0.8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--bands", action="store_true", help="band energies along one run (module doc)")
    ap.add_argument("--seed", type=int, default=1, help="the seed of --bands")
    ap.add_argument("--sweep", nargs="+", metavar="CKPT", help="checkpoints to sweep over t0 (module doc)")
    ap.add_argument("--predictor", default="em", choices=("em", "exponential"),
                    help="the sweep's predictor (with 1 Langevin corrector step)")
    args = ap.parse_args(argv)
    if args.sweep:
        return sweep(args.sweep, args.seeds, args.n, predictor=args.predictor)
    model, process, _, ck = load_model(args.ckpt)
    score = score_function(model)
    steps = ck.get("sampling", {}).get("steps")
    d = load_digits(int(ck["arch"]["image_size"]), "test")[: args.n]
    stroke = make_strokes(d, 3, 1.0)
    if args.bands:
        for row in bands(process, score, gaussian_reference(process, score), stroke, args.t0, steps, args.seed):
            print(json.dumps(row))
        return
    inputs = {
        "the held-out digits themselves": d,
        "blurred only (1 px, no quantisation)": make_strokes(d, 256, 1.0),
        "quantised to 5 levels, blurred 1 px": make_strokes(d, 5, 1.0),
        "quantised to 3 levels, blurred 1 px (the default stroke)": stroke,
        "quantised to 3 levels, not blurred": make_strokes(d, 3, 0.0),
        "default stroke, modes of (near) zero data variance set to the data mean":
            band_projection(stroke, gaussian_reference(process, score)),
    }
    rows = []
    for name, x in inputs.items():
        row = {"input": name}
        for seed in args.seeds:
            out = sdedit_spde(process, score, x, args.t0, steps=steps, seed=seed)
            row[f"outside_seed{seed}"] = float((out.abs() > OUTSIDE).flatten(1).any(1).float().mean())
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n| input pushed to t0 = {args.t0} | " + " | ".join(f"outside, seed {s}" for s in args.seeds) + " |")
    print("|---|" + "---|" * len(args.seeds))
    for r in rows:
        print(f"| {r['input']} | " + " | ".join(f"{r[f'outside_seed{s}']:.3f}" for s in args.seeds) + " |")


if __name__ == "__main__":
    main()
