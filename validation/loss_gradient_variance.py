"""Per-batch variance of the parameter gradient of the score-matching losses (docs/genmodel.md, Results).

For a trained model of a LINEAR chain (where both losses apply and have the same minimiser), compares
the stochastic gradients of the exact-Gaussian DSM and of the one-step transition loss with and without
the antithetic pair: for each loss, ``--batches`` independent batches of ``--batch`` chain states, the
gradient g_b of every batch, and the per-batch variance mean_b |g_b - mean g|^2 next to |mean g|^2.

    genmodel train CONFIG.toml --out runs/iso     # e.g. the digits config with preset "paper_isotropic"
    python validation/loss_gradient_variance.py CONFIG.toml runs/iso/last.pt

``--by-time`` instead splits the chain steps k into bins and gives, per bin, the variance of the
gradient of ONE chain state (the loss at a k drawn uniformly in the bin, its u_k simulated from a
training image): the transition loss for any chain (the anisotropic one included), the path loss
(genmodel.path_dsm) where it applies, and the exact-Gaussian DSM for a linear chain. The loss is an
average over k, so the variance of a batch gradient is the bin-fraction-weighted sum of these (plus
the spread of the bin means).
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genmodel.losses import ExactGaussianDSM, TransitionDSM  # noqa: E402
from genmodel.path_dsm import PathDSM  # noqa: E402
from genmodel.train import Trainer, load_config  # noqa: E402


def flat_gradient(model, loss: torch.Tensor) -> torch.Tensor:
    """The gradient of ``loss`` with respect to all of the model's parameters, as one float64 vector."""
    model.zero_grad(set_to_none=False)
    loss.backward()
    return torch.cat([q.grad.flatten() for q in model.parameters()]).double().clone()


def gradient_variance(model, loss, batch: int, batches: int, rng) -> tuple[float, float]:
    G = torch.stack([flat_gradient(model, loss(model, batch, rng)) for _ in range(batches)])
    mean = G.mean(0)
    return float(((G - mean) ** 2).sum(1).mean()), float(mean.square().sum())


BINS = (0.0, 0.0025, 0.01, 0.04, 0.125, 0.3, 0.55, 0.8, 1.0)  # fractions of K (bin edges)


def gradient_variance_by_time(model, process, data, per_bin: int, rng) -> list[tuple]:
    """Rows (k_lo, k_hi, var transition, var path or None, var exact or None) of single-state gradient
    variances (path: genmodel.path_dsm, where it applies: untamed chain, additive white noise)."""
    K = process.n_steps
    edges = sorted({max(1, int(round(f * K))) for f in BINS[:-1]}) + [K + 1]  # k in [1, K]
    transition = TransitionDSM(process, data, 1, np.random.default_rng(0))
    exact = ExactGaussianDSM(process, data) if process.is_linear else None
    try:
        path = PathDSM(process, data, 1, np.random.default_rng(0))
    except ValueError:
        path = None

    def var(gs):
        G = torch.stack(gs)
        return float(((G - G.mean(0)) ** 2).sum(1).mean())

    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        g_tr, g_pa, g_ex = [], [], []
        for _ in range(per_bin):
            k = int(rng.integers(lo, hi))  # the loss at chain step k: the transition k-1 -> k
            u0 = data[torch.as_tensor(rng.integers(0, data.shape[0], 1))].to(torch.float32).contiguous()
            u = process.simulate(u0, k - 1, rng)
            t = process.transition(k - 1, u, rng)
            g_tr.append(flat_gradient(model, transition.loss_on(model, t)))
            if path is not None:
                g_pa.append(flat_gradient(model, path.loss_at(model, u0, k, rng)))
            if exact is not None:
                g_ex.append(flat_gradient(model, exact.loss_at(model, u0, k, rng)))
        rows.append((lo, hi, var(g_tr), var(g_pa) if g_pa else None, var(g_ex) if g_ex else None))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("checkpoint", help="a last.pt of that config (training state)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--pool", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--by-time", action="store_true", help="single-state gradient variance per bin of chain steps")
    ap.add_argument("--per-bin", type=int, default=24, help="chain states per bin for --by-time")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, out_dir=tmp, log=lambda *a: None)
        trainer.resume(args.checkpoint)
    p, data, model = trainer.process, trainer.train_data, trainer.model
    if args.by_time:
        model.train()
        rows = gradient_variance_by_time(model, p, data, args.per_bin, np.random.default_rng(args.seed))
        print(f"| chain steps k (K = {p.n_steps}) | fraction of k | transition, antithetic pair | path | "
              "exact-Gaussian DSM |")
        print("|---|---|---|---|---|")
        for lo, hi, vt, vp, ve in rows:
            cells = ["-" if v is None else f"{v:.3g}" for v in (vp, ve)]
            print(f"| [{lo}, {hi}) | {(hi - lo) / p.n_steps:.4f} | {vt:.3g} | {cells[0]} | {cells[1]} |")
        return 0
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
