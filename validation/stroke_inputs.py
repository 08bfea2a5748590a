"""Which SDEdit inputs make the shipped anisotropic model's reverse chain run away (docs/genmodel.md,
stroke2img).

Pushes 64 held-out digits, transformed in several ways, to t0 = 0.8 with the model's own chain and
reverses them with the default sampler (the model's 500 steps, EM + 1 Langevin step), two seeds each,
and prints the fraction of outputs with a pixel outside [-1.5, 1.5] before clipping
(:data:`genmodel.stroke.OUTSIDE`). About 8 minutes on one core.

    python validation/stroke_inputs.py [--ckpt genmodel/assets/digits16_anisotropic.pt] [--n 64]
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="genmodel/assets/digits16_anisotropic.pt")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--t0", type=float, default=0.8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    model, process, _, ck = load_model(args.ckpt)
    score = score_function(model)
    steps = ck.get("sampling", {}).get("steps")
    d = load_digits(int(ck["arch"]["image_size"]), "test")[: args.n]
    stroke = make_strokes(d, 3, 1.0)
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
