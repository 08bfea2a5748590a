# ruff: noqa: E402
"""Stroke-to-image (SDEdit) with any genmodel checkpoint: strokes from held-out digits (colour
quantisation + blur) or your own PNG, pushed to several t0 and brought back by the reverse process.
Prints realism (classifier confidence) and faithfulness (RMS distance to the stroke) per t0 and writes
one figure: the strokes on top, one row of outputs per t0.

    python examples/stroke2img.py CKPT --t0 0.2 0.6 1.2 --n 8 --out stroke2img.png
    python examples/stroke2img.py CKPT --stroke my_drawing.png --invert --t0 0.8
    genmodel stroke2img CKPT my_drawing.png --invert --t0 0.8 --out out.png      # the same from the CLI

For flow-matching checkpoints t0 is a fraction in (0, 1] of the way towards noise; for SPDE models a
time in (0, T].
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: see genmodel/__init__.py

import argparse

import torch

from genmodel.cli import save_grid
from genmodel.data import load_digits
from genmodel.metrics import load_classifier
from genmodel.runs import load_model
from genmodel.stroke import load_stroke, make_strokes, stroke2img, stroke_scores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--stroke", help="a PNG drawing instead of strokes from held-out digits")
    ap.add_argument("--invert", action="store_true", help="the PNG is dark on light")
    ap.add_argument("--t0", type=float, nargs="+", default=[0.2, 0.6, 1.2])
    ap.add_argument("--n", type=int, default=8, help="number of held-out digits to turn into strokes")
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--blur", type=float, default=1.0)
    ap.add_argument("--steps", type=int, help="sampler steps over the whole time interval")
    ap.add_argument("--out", default="stroke2img.png")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, process, _, ck = load_model(a.ckpt)
    size = int(ck["arch"]["image_size"])
    if a.stroke:
        strokes = make_strokes(load_stroke(a.stroke, size, a.invert), a.levels, a.blur)
    else:
        strokes = make_strokes(load_digits(size, "test")[: a.n], a.levels, a.blur)
    classifier = load_classifier()
    samp = {k: v for k, v in ck.get("sampling", {}).items() if k in ("method", "corrector_steps", "snr")}
    rows = [strokes]
    print(f"{'t0':>6} {'confidence':>10} {'conf>0.9':>9} {'RMS to stroke':>14} {'RMS (stroke transform)':>23}")
    for t0 in a.t0:
        x = stroke2img(model, process, strokes, t0, steps=a.steps or ck.get("sampling", {}).get("steps"), seed=0,
                       **samp).clamp(-1, 1)
        r = stroke_scores(x, strokes, classifier, a.levels, a.blur)
        print(f"{t0:6.3g} {r['confidence_mean']:10.3f} {r['confident_fraction']:9.3f} {r['l2_to_stroke']:14.3f} "
              f"{r['l2_to_stroke_after_stroke_transform']:23.3f}")
        rows.append(x)
    save_grid(torch.cat(rows), a.out, nrow=strokes.shape[0], title=f"strokes (top); t0 = {a.t0} (rows)")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
