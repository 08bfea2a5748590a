# ruff: noqa: E402
"""A generative model in latent space (paper, Appendix O, on digits): train a small autoencoder
(16x16 digits -> 2 x 8 x 8 standardised latents), train an SPDE model on the latents through the usual
config ([data] dataset = "latents"), sample, decode and score with the digits classifier.

    python examples/latent_digits.py --out out/latent_digits [--steps 1500] [--preset paper_isotropic]

Equivalent CLI steps:
    genmodel train-autoencoder --out ae.pt
    genmodel train latent.toml --out runs/latent   # [data] dataset = "latents", autoencoder = "ae.pt",
                                                   #        source = {dataset = "digits", image_size = 16}
    genmodel sample runs/latent/model.pt --n 64 --out grid.png      # decoded automatically
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: see genmodel/__init__.py

import argparse
import time
from pathlib import Path

import torch

from genmodel.cli import main as cli


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/latent_digits")
    ap.add_argument("--ae-epochs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--preset", default="paper_isotropic",
                    choices=("paper_isotropic", "paper_anisotropic", "pure_noise", "flow_matching"))
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cli(["train-autoencoder", "--out", str(out / "ae.pt"), "--epochs", str(a.ae_epochs)])
    stencil = "paper" if a.preset == "paper_anisotropic" else "conservative"
    process = (f'preset = "{a.preset}"\n' if a.preset == "flow_matching" else
               f'preset = "{a.preset}"\nT = 2.0\ndt = 2e-3\nstencil = "{stencil}"\n')  # latent grid 8x8: K = 1000
    loss = {"paper_anisotropic": "transition", "flow_matching": "flow_matching"}.get(a.preset, "exact")
    steps = 132 if a.preset != "flow_matching" else 66  # 8x8 latents: Delta <= 1/64 (heat presets), T = 2
    (out / "latent.toml").write_text(f"""
[data]
dataset = "latents"
autoencoder = "{out / 'ae.pt'}"
source = {{dataset = "digits", image_size = 16}}

[process]
{process}
[network]
ch = 16
ch_mult = [1, 2]
num_res_blocks = 1
attn_resolutions = [4]
groups = 8
score_param = "moments"

[train]
steps = {a.steps}
batch = 64
lr = 1e-3
ema = 0.995
warmup = 100
loss = "{loss}"
threads = 1

[sampling]
steps = {steps}
corrector_steps = 1
""")
    cli(["train", str(out / "latent.toml"), "--out", str(out / "run"), "--quiet"])
    cli(["sample", str(out / "run" / "model.pt"), "--n", "64", "--out", str(out / "samples.png"), "--quiet"])
    cli(["evaluate", str(out / "run" / "model.pt"), "--n", str(a.n), "--quiet"])
    print(f"total {time.perf_counter() - t0:.0f} s; files in {out}")


if __name__ == "__main__":
    main()
