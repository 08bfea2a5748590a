"""Per-batch variance of the parameter gradient of the score-matching losses (docs/genmodel.md, Results).

For a trained model of a LINEAR chain (where both losses apply and have the same minimiser), compares
the stochastic gradients of the exact-Gaussian DSM and of the one-step transition loss with and without
the antithetic pair: for each loss, ``--batches`` independent batches of ``--batch`` chain states, the
gradient g_b of every batch, and the per-batch variance mean_b |g_b - mean g|^2 next to |mean g|^2.

    genmodel train CONFIG.toml --out runs/iso     # e.g. the digits config with preset "paper_isotropic"
    python validation/loss_gradient_variance.py CONFIG.toml runs/iso/last.pt
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genmodel.losses import ExactGaussianDSM, TransitionDSM  # noqa: E402
from genmodel.train import Trainer, load_config  # noqa: E402


def gradient_variance(model, loss, batch: int, batches: int, rng) -> tuple[float, float]:
    params = list(model.parameters())
    grads = []
    for _ in range(batches):
        model.zero_grad(set_to_none=False)
        loss(model, batch, rng).backward()
        grads.append(torch.cat([q.grad.flatten() for q in params]).double().clone())
    G = torch.stack(grads)
    mean = G.mean(0)
    return float(((G - mean) ** 2).sum(1).mean()), float(mean.square().sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("checkpoint", help="a last.pt of that config (training state)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--pool", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, out_dir=tmp, log=lambda *a: None)
        trainer.resume(args.checkpoint)
    p, data, model = trainer.process, trainer.train_data, trainer.model
    if not p.is_linear:
        raise SystemExit("the comparison needs a linear chain (the exact loss exists only there)")
    model.train()
    losses = {"exact-Gaussian DSM": ExactGaussianDSM(p, data),
              "transition, antithetic pair": TransitionDSM(p, data, args.pool, np.random.default_rng(1)),
              "transition, no pair": TransitionDSM(p, data, args.pool, np.random.default_rng(1), antithetic=False)}
    rng = np.random.default_rng(args.seed)
    print(f"| loss ({args.batches} batches of {args.batch}) | per-batch gradient variance | |mean gradient|^2 |")
    print("|---|---|---|")
    for name, loss in losses.items():
        var, m2 = gradient_variance(model, loss, args.batch, args.batches, rng)
        print(f"| {name} | {var:.3g} | {m2:.3g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
