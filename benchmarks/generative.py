# ruff: noqa: E402
"""Generative cost: training steps/s and sampling time per image, VE-SDE vs the anisotropic SPDE.

Same U-Net (the shipped digits config, genmodel/configs/digits16_anisotropic.toml [network]), same
data (digits 16x16), same optimiser; only the forward process and its loss differ:

* VE-SDE: preset ``pure_noise`` (eq. 13), exact-Gaussian DSM (the marginal is sampled in closed form;
  no chain is simulated);
* isotropic heat: preset ``paper_isotropic`` (eq. 17), conservative stencil, exact-Gaussian DSM;
* anisotropic: preset ``paper_anisotropic`` (eq. 14-16, paper stencil) with the loss of the shipped
  model and of Table 1, the path-space DSM (:mod:`genmodel.path_dsm`: forward paths that spdekit
  simulates, with their running targets, one drift adjoint per chain step; one network evaluation per
  state), and with the one-step transition DSM (the antithetic pair: 2 network evaluations per state).

"evals" is the number of network evaluations per training step: the anisotropic row with batch 64
evaluates the network on 128 states, like the VE row with batch 128 (equal network cost), and the
row with batch 128 shows the cost at equal chain states. The paper reports its anisotropic training
1.86x slower per step than VE-SDE. Training steps of all contenders alternate (blocks of
``--block`` steps) in one process; medians over ``--repeats`` blocks.

Sampling: ``genmodel.sample`` with the predictor-corrector of Algorithm 3.1 (500 steps, one
corrector step), n images, the moment-matched Gaussian prior fitted on 256 training images. The
network output is zeroed (the score is then the Gaussian reference of ``ScoreModel``): the cost is
the same as for a trained model, and the reverse chain stays finite whatever the weights.

    python benchmarks/generative.py [--repeats 5] [--block 5] [--n 32] [--threads 1] [--size 16]
                                    [--device cpu|cuda] [--json F]

``--device cuda`` trains and samples with the network on the GPU (``[train] device``), the chain there
too when cupy is installed (:func:`genmodel.distributed.placed`; else on the host, the network through
``OnDevice``: the report says which); ``--size 32`` uses the digits at 32 px (the
same U-Net). GPU figures are recorded in docs/gpu.md only as measured there.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: see genmodel/__init__.py

import argparse
import copy
import tempfile
import time
import tomllib
from pathlib import Path

import torch
from _harness import alternate, machine, write_json

from genmodel import sample
from genmodel.distributed import placed
from genmodel.priors import GaussianPrior
from genmodel.runs import score_function
from genmodel.train import Trainer, load_config

CONFIG = Path(__file__).resolve().parents[1] / "genmodel" / "configs" / "digits16_anisotropic.toml"


def make_trainer(preset: str, loss: str, batch: int, base: dict, out: str, device: str = "cpu",
                 size: int = 16) -> Trainer:
    cfg = copy.deepcopy(base)
    cfg["data"]["image_size"] = size
    cfg["process"] = {"preset": preset, "T": base["process"]["T"], "dt": base["process"]["dt"]}
    # the stencils of the shipped configs: eq. (35)-(36) for the anisotropic model; the conservative one for
    # the isotropic model (its exact law is then diagonal in DCT-II; with the paper stencil it is dense)
    cfg["process"]["stencil"] = "paper" if preset == "paper_anisotropic" else "conservative"
    cfg["train"].update(loss=loss, batch=batch, pool=1024, warmup=0, device=device)
    return Trainer(load_config(cfg), out_dir=out, log=lambda *a: None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--block", type=int, default=5, help="training steps per timed block")
    p.add_argument("--n", type=int, default=32, help="images per sampling run")
    p.add_argument("--sampling-steps", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the network trains and samples (default cpu)")
    p.add_argument("--size", type=int, choices=(16, 32), default=16, help="digits image size (default 16)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(a.threads)
    import numba

    numba.set_num_threads(min(a.threads, numba.config.NUMBA_NUM_THREADS))
    base = tomllib.loads(CONFIG.read_text())
    base["train"]["threads"] = a.threads
    rows = [  # (label, preset, loss, batch, network evaluations per step)
        ("VE-SDE (pure noise), exact DSM", "pure_noise", "exact", 128, 128),
        ("isotropic heat, exact DSM", "paper_isotropic", "exact", 128, 128),
        ("anisotropic, path DSM", "paper_anisotropic", "path", 128, 128),
        ("anisotropic, transition DSM", "paper_anisotropic", "transition", 64, 128),
        ("anisotropic, transition DSM", "paper_anisotropic", "transition", 128, 256),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        setup = {}
        for label, preset, loss, batch, _evals in rows:
            t0 = time.perf_counter()
            trainers[(label, batch)] = make_trainer(preset, loss, batch, base, tmp, a.device, a.size)
            setup[(label, batch)] = time.perf_counter() - t0

        def block(tr):
            def run():
                for _ in range(a.block):
                    tr.train_step()
                if a.device == "cuda":  # the timer must see the device work, not its queueing
                    torch.cuda.synchronize()
            return run

        fns = {k: block(tr) for k, tr in trainers.items()}
        res = alternate(fns, a.repeats, warmup=1)

        # where the anisotropic steps' time goes: the forward chain and its targets (spdekit) vs the rest
        t_pool = {}
        for key, batch in ((("anisotropic, path DSM", 128), 128), (("anisotropic, transition DSM", 64), 64)):
            tr = trainers[key]
            t0 = time.perf_counter()
            for _ in range(a.block * a.repeats):
                tr.loss.pool.draw(batch, tr.rng)
            t_pool[key] = (time.perf_counter() - t0) / (a.block * a.repeats)

        # sampling per image
        samp = {}
        for key in (("VE-SDE (pure noise), exact DSM", 128), ("isotropic heat, exact DSM", 128),
                    ("anisotropic, path DSM", 128)):
            tr = trainers[key]
            with torch.no_grad():
                for prm in tr.ema.shadow.net.parameters():
                    prm.zero_()
            model, chain = placed(tr.ema.shadow, a.device)
            prior = GaussianPrior.fit(tr.process, tr.train_data[:256], replicates=1, seed=0)
            sample(tr.process, score_function(model), 1, steps=2, corrector_steps=1, prior=prior, seed=1,
                   device=chain)  # warm-up
            t0 = time.perf_counter()
            x = sample(tr.process, score_function(model), a.n, steps=a.sampling_steps, corrector_steps=1,
                       prior=prior, seed=0, device=chain)
            if a.device == "cuda":
                torch.cuda.synchronize()
            secs = time.perf_counter() - t0
            samp[key[0]] = {"seconds_per_image": secs / a.n, "finite": bool(torch.isfinite(x).all())}

    ve = res[("VE-SDE (pure noise), exact DSM", 128)]["median"]
    lines = [f"training: {a.block} steps per block, median of {a.repeats} alternating blocks; "
             f"torch/numba threads {a.threads}; device {a.device} (chain on {trainers[rows[0][0], 128].chain_device}); "
             f"{a.size} px; "
             f"network {trainers[rows[0][0], 128].n_params:,} parameters",
             f"{'process, loss':34s} {'batch':>5s} {'evals':>5s} {'s/step':>8s} {'steps/s':>8s} {'vs VE':>7s}"]
    out_rows = []
    for label, preset, loss, batch, evals in rows:
        s = res[(label, batch)]["median"] / a.block
        lines.append(f"{label:34s} {batch:5d} {evals:5d} {s:8.3f} {1 / s:8.2f} {s / (ve / a.block):6.2f}x")
        out_rows.append({"process": label, "preset": preset, "loss": loss, "batch": batch, "network_evals": evals,
                         "seconds_per_step": s, "ratio_to_ve": s / (ve / a.block),
                         "setup_seconds": setup[(label, batch)]})
    for (label, batch), tp in t_pool.items():
        s_aniso = res[(label, batch)]["median"] / a.block
        lines.append(f"{label} (batch {batch}): forward chain and targets by spdekit {tp * 1e3:.1f} ms per step "
                     f"({100 * tp / s_aniso:.0f}% of the step); the rest is the network (forward + backward)")
    lines.append("paper (its GPU, CIFAR-10 scale): anisotropic 1.86x slower per training step than VE-SDE")
    lines.append(f"sampling: {a.sampling_steps} predictor steps + 1 corrector step each, {a.n} images")
    for k, v in samp.items():
        lines.append(f"  {k:34s} {v['seconds_per_image']:.3f} s per image{'' if v['finite'] else ' (NON-FINITE)'}")
    table = "\n".join(lines)
    print(table)
    chain = {f"{k[0]}, batch {k[1]}": v for k, v in t_pool.items()}
    write_json(a.json, {"benchmark": "generative", "machine": machine(), "device": a.device, "image_size": a.size,
                        "rows": out_rows, "sampling": samp, "forward_chain_seconds_per_step": chain, "table": table})


if __name__ == "__main__":
    main()
