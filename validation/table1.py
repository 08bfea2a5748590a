# ruff: noqa: E402
"""Table 1 of the paper on digits: VE-SDE, isotropic heat, anisotropic heat, flow matching (issue 6).

Every method is trained with the SAME U-Net (architecture, time embedding), the same number of steps,
batch, learning-rate schedule and EMA, on the same training split of scikit-learn digits; samples are
scored with the project's shipped digits classifier against the held-out split:

* FID and KID (cubic kernel) on the classifier's 128-d features (NOT Inception: the values are not
  comparable to the paper's Inception-based numbers);
* the Inception-Score analogue exp(E KL(p(y|x) || p(y))) of the classifier's softmax (10 classes: at most 10);
* classifier confidence: the mean top-class probability, and the fraction above 0.9;
* training seconds per 1000 steps and sampling seconds per image (wall clock, this machine).

Samplers use the same number of network evaluations (NFE) per image: the SPDE methods run the
predictor-corrector sampler (Algorithm 3.1) with ``steps`` predictor steps (the smallest count that
respects the stability bound Delta <= h^2 / (4 max alpha1) of the heat presets, with 3% margin) and
``corrector`` Langevin steps each; flow matching runs Heun with NFE / 2 steps.

    python validation/table1.py --quick           # 16x16, 1 seed, small net, < 15 min on 2 cores (smoke level)
    python validation/table1.py --jobs 2          # 16x16 and 32x32, 3 seeds, the shipped-config net (hours)
    python validation/table1.py --jobs 2 --sizes 16 --seeds 0   # a piece of it (finished runs are kept)
    python validation/table1.py --ablation --jobs 2   # lambda1_min and l ablation of the anisotropic preset
    python validation/table1.py --status          # which runs of that command are done / resumable / not started
    python validation/table1.py --sizes 32 --keep-rows   # 32 px rows; the 16 px rows kept from docs/table1.json

Writes ``docs/table1.md`` (``docs/table1_quick.md`` with ``--quick``, ``docs/table1_ablation.md`` with
``--ablation``; generated, with command, commit and machine), one sample grid PNG per method and size
under ``docs/figures/table1/`` and the raw numbers as JSON next to the markdown file. Finished runs are
kept in ``--workdir`` (model checkpoints and per-run JSON): a rerun skips them, and an interrupted
training resumes from its ``last.pt``. 32x32 samples are scored at 16x16 (2x2 area averaging of samples
and held-out images alike), since the shipped classifier is a 16x16 one.

On a GPU machine each worker trains and samples with its U-Net on the GPU (torch's "auto" device; the
chain's numerics and the data stay on one CPU thread per run); ``--jobs 15`` ran the 15 runs of one
size side by side on one H100 (docs/gpu.md). The runs live in ``WORKDIR/<profile>/<run>/`` (``full``,
``quick``, ``full_ablation``); to regenerate the doc elsewhere, copy each run's ``config.json``,
``result.json`` and ``grid_samples.pt`` into the same layout there. ``TABLE1_COMMIT``, when set, is
the commit the runs record (for a copy of the tree whose ``.git`` is missing or stale: the GPU machine's
copy reported an older HEAD).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: see genmodel/__init__.py

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "validation"))  # table1_doc, also in spawned workers and when imported by path

from table1_doc import (  # noqa: E402,F401
    DIVERGED,
    WITHDRAWN_ELL,
    _run_machines,
    commit,
    kept_rows,
    machine,
    samples_for,
    withdrawn_row,
    write_doc,
)

from genmodel.cli import save_grid  # noqa: E402
from genmodel.data import load_digits  # noqa: E402
from genmodel.distributed import on_device, resolve_device  # noqa: E402
from genmodel.flow_matching import sample as fm_sample  # noqa: E402
from genmodel.metrics import evaluate_samples, load_classifier  # noqa: E402
from genmodel.runs import load_model, make_trainer, score_function  # noqa: E402
from genmodel.sampling import sample as spde_sample  # noqa: E402
from genmodel.train import load_config  # noqa: E402

METHODS = {
    "ve_sde": {"label": "VE-SDE (pure noise, eq. 13; Song et al. 2021)",
               "process": {"preset": "pure_noise", "stencil": "conservative"}, "loss": "exact"},
    "isotropic": {"label": "Ours (isotropic): heat of eq. 17 (alpha2 -> 0.5, conservative stencil, exact loss)",
                  "process": {"preset": "paper_isotropic", "stencil": "conservative"}, "loss": "exact"},
    "anisotropic": {"label": "Ours (anisotropic) (eq. 14-16)",
                    "process": {"preset": "paper_anisotropic", "stencil": "paper"}, "loss": "path"},
    "flow_matching": {"label": "Flow matching, OT path (Lipman et al.)",
                      "process": {"preset": "flow_matching", "sigma_min": 1e-4}, "loss": "flow_matching"},
}
# not in the default list: the anisotropic runs of stops 13-16, trained with the one-step transition loss (two network
# evaluations per state), before the path-space loss existed; `--methods anisotropic_transition` keeps them comparable
EXTRA_METHODS = {
    "anisotropic_transition": {"label": "Ours (anisotropic), one-step transition loss",
                               "process": {"preset": "paper_anisotropic", "stencil": "paper"}, "loss": "transition"},
}
ALL_METHODS = {**METHODS, **EXTRA_METHODS}

# Score parameterisation of the SPDE models: "reference" (Gaussian reference score of the LINEARISED chain +
# network residual). Not "moments" (the earlier shipped configs' choice): measured on the anisotropic preset at 16 px,
# with the network output set to zero, the reverse chain from the moment-matched prior stays bounded with
# "reference" (max |u| 2.9 at t = 0, 264 steps) but diverges with "moments" (max |u| 1.9 at t = 1.83, 1e4 at
# t = 1.0, 9.5e4 at t = 0, for 264 and 528 steps alike): a briefly trained residual cannot repair that.
# For the linear chains (VE-SDE, isotropic heat on the conservative stencil) the two references coincide.


PROFILES = {
    # smoke level: sized for < 15 min on 2 shared cores for all four methods together
    "quick": {"sizes": [16], "seeds": [0], "steps": 250, "batch": 32, "lr": 2e-3, "warmup": 25, "ema": 0.99,
              "network": {"ch": 8, "ch_mult": [1, 2, 4], "num_res_blocks": 1, "attn_resolutions": [4],
                          "groups": 4, "dropout": 0.0, "skip_kernel": 5, "score_param": "reference"},
              "n_samples": 128, "corrector": 0, "pool": 512, "T": 2.0, "dt": 1e-3, "replicates": 1},
    # the full comparison, the same budget for every method: 3,600 steps on one core (each piece runs on one
    # thread; the shipped digits config spends the same 30 minutes on two cores: 5,600 steps)
    "full": {"sizes": [16, 32], "seeds": [0, 1, 2], "steps": 3600, "batch": 64, "lr": 1e-3, "warmup": 100,
             "ema": 0.995, "lr_schedule": "cosine",
             "network": {"ch": 16, "ch_mult": [1, 2, 4], "num_res_blocks": 1, "attn_resolutions": [4],
                         "groups": 8, "dropout": 0.0, "skip_kernel": 5, "score_param": "reference"},
             "n_samples": 1000, "corrector": 1, "pool": 2048, "T": 2.0, "dt": 1e-3, "replicates": 2,
             # 32 px: 500 samples (sampling 1,000 at 32 px costs ~1.7 h of one core per run: 1,056 network
             # evaluations of 5.6 ms per image, measured); the ablation: 16 px, one seed (see below)
             "n_samples_32px": 500, "ablation_sizes": [16], "ablation_seeds": [0]},
}

# The ablation the paper could not afford, one factor at a time around the paper's anisotropic preset
# (lambda1_min = 0.025, l = 0): lambda1_min in {0.0125, 0.025, 0.05, inf} at l = 0. Every variant is trained
# with the one-step transition loss (the exact loss needs a linear chain). The correlated-noise variants
# l = 1, 2 (stop 18) are withdrawn: the Gaussian reference under their score keeps only the diagonal of the
# correlated noise's mode covariance (table1_doc.WITHDRAWN_ELL, measured by reference_check); --rewrite
# keeps them out of the document. The 3-seed lambda1_min ablation with the path loss is
# validation/anisotropy_study.py's.
ABLATION_LAMBDA1_MIN = (0.0125, 0.025, 0.05, math.inf)
ABLATION_ELL = (0,)
ABLATION_CENTRE = (0.025, 0)
ABLATION_CELLS = ([(lmin, 0) for lmin in ABLATION_LAMBDA1_MIN]
                  + [(ABLATION_CENTRE[0], ell) for ell in ABLATION_ELL if ell != ABLATION_CENTRE[1]])
ABLATION_LOSS = "transition"



def spde_sampler_steps(T: float, size: int) -> int:
    """Predictor steps respecting Delta <= h^2 / (4 alpha1_max), alpha1_max = 2 * size, h = 1, with 3% margin."""
    bound = 1.0 / (4 * 2.0 * size)
    return int(math.ceil(1.03 * T / bound))




def make_config(method: str, prof: dict, size: int, seed: int, process_override: dict | None = None) -> dict:
    m = ALL_METHODS[method]
    proc = dict(process_override or m["process"])
    if proc.get("preset") != "flow_matching":
        proc.update({"T": prof["T"], "dt": prof["dt"]})
    net = dict(prof["network"])
    if size == 32:
        net["attn_resolutions"] = [8]
    spde_steps = spde_sampler_steps(prof["T"], size)
    nfe = spde_steps * (1 + prof["corrector"])
    sampling = ({"steps": nfe // 2, "method": "heun"} if proc.get("preset") == "flow_matching"
                else {"steps": spde_steps, "corrector_steps": prof["corrector"], "snr": 0.16})
    return load_config({
        "data": {"dataset": "digits", "image_size": size, "holdout": 0.2, "seed": 0},
        "process": proc,
        "network": net,
        "train": {"steps": prof["steps"], "batch": prof["batch"], "lr": prof["lr"], "ema": prof["ema"],
                  "grad_clip": 1.0, "warmup": prof["warmup"], "loss": ABLATION_LOSS if process_override else m["loss"],
                  "lr_schedule": prof.get("lr_schedule", "constant"), "lr_final": 0.1,
                  "pool": prof["pool"], "checkpoint_every": max(50, prof["steps"] // 10), "seed": seed,
                  "threads": 1, "log_every": 25},
        "prior": {"replicates": prof["replicates"]},
        "sampling": sampling,
        "output": {"dir": "unused", "half_precision_export": False},
    })


def downsample_to_16(x: torch.Tensor) -> torch.Tensor:
    f = x.shape[-1] // 16
    return x if f == 1 else torch.nn.functional.avg_pool2d(x, f)


def _as_stored(cfg: dict) -> dict:
    """``cfg`` as ``config.json`` holds it (JSON types, sorted keys), for comparisons with a stored one."""
    return json.loads(json.dumps(cfg, sort_keys=True, default=str))


def check_run_folder(out: Path, cfg: dict) -> None:
    """A run folder is reused (its result, or its ``last.pt`` to resume) only for the config that made it:
    ``config.json`` holds that config; a different one, or a folder without it, stops with a message."""
    stored, want = out / "config.json", _as_stored(cfg)
    if stored.is_file():
        have = json.loads(stored.read_text())
        if have != want:
            diff = sorted(f"{sec}.{k}" for sec in set(have) | set(want)
                          for k in set(have.get(sec, {})) | set(want.get(sec, {}))
                          if have.get(sec, {}).get(k) != want.get(sec, {}).get(k))
            raise SystemExit(f"{out} was made with another config (differs in {', '.join(diff)}): move it away or "
                             "choose another --workdir")
    elif any((out / f).is_file() for f in ("result.json", "last.pt", "model.pt")):
        raise SystemExit(f"{out} holds a run but no config.json (made by an older table1.py): check it and write "
                         "its config.json, or move it away")
    else:
        out.mkdir(parents=True, exist_ok=True)
        tmp = stored.with_suffix(".tmp")
        tmp.write_text(json.dumps(want, indent=1, sort_keys=True))
        os.replace(tmp, stored)


def run_one(name: str, cfg: dict, workdir: Path, classifier=None, log=print, progress: bool = True,
            heldout: torch.Tensor | None = None, n_samples: int | None = None, prior=None) -> dict:
    """Train (or resume), export, sample and score one (method, size, seed).

    Defaults are Table 1's: scored against the held-out digits (``heldout``), ``samples_for(PROFILE, size)``
    samples (``n_samples``), the model's stored moment-matched prior (``prior``: any object with
    ``sample(n, rng, dtype)``). validation/anisotropy_study.py sets them for its second data set and its
    VE-SDE prior."""
    out = workdir / name
    res_path = out / "result.json"
    check_run_folder(out, cfg)
    if res_path.is_file():
        log(f"[{name}] done before; reading {res_path}")
        return json.loads(res_path.read_text())
    torch.set_num_threads(1)
    classifier = classifier if classifier is not None else load_classifier()
    t0 = time.perf_counter()
    tr = make_trainer(cfg, out, log=log)
    setup = time.perf_counter() - t0
    if (out / "last.pt").is_file():
        tr.resume()
    tr.run(progress=progress)
    tr.export()
    model, process, stored_prior, ck = load_model(out / "model.pt")
    dev = resolve_device(cfg["train"].get("device", "auto"))  # the trainer's device: the GPU when torch sees one
    model = on_device(model, dev.type)  # the network there; the chain's numerics stay in spdekit on the CPU
    size = cfg["data"]["image_size"]
    n = samples_for(PROFILE, size) if n_samples is None else int(n_samples)
    seed = cfg["train"]["seed"]
    heldout = load_digits(size, "test") if heldout is None else heldout
    x, ev = sample_and_score(model, process, stored_prior if prior is None else prior, ck["sampling"], size, n,
                             seed, classifier, heldout, progress)
    res = {"name": name, **{k: ev[k] for k in ("fid", "kid", "kid_std", "is_analogue", "confidence_mean",
                                               "confident_fraction", "class_histogram")},
           "train_steps": tr.step, "train_seconds": tr.seconds, "train_s_per_1k": 1000 * tr.seconds / max(tr.step, 1),
           "setup_seconds": setup, "prior_seconds": getattr(tr, "prior_seconds", 0.0),
           **{k: ev[k] for k in ("sample_seconds", "sample_s_per_image", "n_samples", "nfe")},
           "params": tr.n_params, "loss": tr.loss.name, "process": tr.process.to_dict(),
           "diverged_fraction": ev["diverged_fraction"], "max_abs_before_clamp": ev["max_abs_before_clamp"],
           "commit": COMMIT_AT_START, "timed_on": timed_on(dev), "machine": machine(),
           "wall_seconds": time.perf_counter() - t0}
    torch.save(x[:64].clone(), out / "grid_samples.pt")
    res_path.write_text(json.dumps(res, indent=1, default=str))
    log(f"[{name}] FID {res['fid']:.2f} KID {res['kid']:.4f} IS {res['is_analogue']:.2f} "
        f"conf {res['confidence_mean']:.3f}; train {res['train_s_per_1k']:.0f} s/1k steps, "
        f"sample {res['sample_s_per_image']:.3f} s/image")
    return res


def sample_and_score(model, process, prior, samp: dict, size: int, n: int, seed: int, classifier,
                     heldout: torch.Tensor, progress: bool = True) -> tuple[torch.Tensor, dict]:
    """``n`` samples of a trained model (sampling seed 1000 + ``seed``) with the settings ``samp`` (a
    checkpoint's [sampling] table; ``samp["predictor"]``, default "em", for the SPDE models) scored against
    ``heldout`` like Table 1: (the samples clipped to [-1, 1], FID / KID / IS analogue / confidence, NFE,
    sampling time, the fraction of pixels beyond DIVERGED before clipping)."""
    t1 = time.perf_counter()
    if getattr(process, "method", None) == "flow_matching":
        x = fm_sample(model, n, (1, size, size), steps=samp["steps"], method=samp["method"], seed=1000 + seed,
                      batch_size=256, progress=progress)
        nfe = 2 * samp["steps"] if samp["method"] == "heun" else samp["steps"]
    else:
        predictor = samp.get("predictor", "em")
        x = spde_sample(process, score_function(model), n, steps=samp["steps"],
                        corrector_steps=samp["corrector_steps"], snr=samp["snr"], prior=prior, seed=1000 + seed,
                        batch_size=256, progress=progress, predictor=predictor)
        steps, corr = samp["steps"], samp["corrector_steps"]
        nfe = (2 * steps - 1 if predictor == "ode" else steps) + steps * corr  # "ode" (Heun): 2 per step, last 1
    sample_seconds = time.perf_counter() - t1
    diverged = float((x.abs() > DIVERGED).float().mean())  # data lie in [-1, 1]; far outside = unstable sampler
    max_abs = float(x.abs().max())
    x = x.clamp(-1, 1)
    xs, hs = downsample_to_16(x), downsample_to_16(heldout)
    met = evaluate_samples(xs, hs, classifier=classifier, seed=seed)
    p = classifier.probabilities(xs)
    return x, {"fid": met["fid"], "kid": met["kid"], "kid_std": met["kid_std"], "is_analogue": met["is_analogue"],
               "confidence_mean": float(p.max(1).mean()), "confident_fraction": met["confident_fraction"],
               "class_histogram": met["class_histogram"], "sample_seconds": sample_seconds,
               "sample_s_per_image": sample_seconds / n, "n_samples": n, "nfe": nfe,
               "diverged_fraction": diverged, "max_abs_before_clamp": max_abs}


def reference_row(size: int, classifier, train: torch.Tensor | None = None,
                  heldout: torch.Tensor | None = None) -> dict:
    """Held-out vs training images (as many as held out; default the digits): the floor of each metric."""
    train = load_digits(size, "train") if train is None else train
    heldout = load_digits(size, "test") if heldout is None else heldout
    xs, hs = downsample_to_16(train[: heldout.shape[0]]), downsample_to_16(heldout)
    met = evaluate_samples(xs, hs, classifier=classifier, seed=0)
    p = classifier.probabilities(xs)
    return {"fid": met["fid"], "kid": met["kid"], "is_analogue": met["is_analogue"],
            "confidence_mean": float(p.max(1).mean()), "confident_fraction": met["confident_fraction"],
            "n": int(xs.shape[0])}






def timed_on(dev: torch.device) -> str:
    """Where a run's network ran (its timings' device): 'CPU' or the GPU's name; each run has one CPU thread."""
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"










def ablation_key(lmin: float, ell: int) -> str:
    return f"aniso_l1min{lmin}_ell{ell}"


def ablation_label(lmin: float, ell: int) -> str:
    return (f"anisotropic, lambda1_min = {lmin}, l = {ell}"
            + (" (the paper's preset)" if (lmin, ell) == ABLATION_CENTRE else ""))


def _label_of(key: str) -> str:
    """A stored row's label: the method's, or the ablation cell's from its key."""
    if key in ALL_METHODS:
        return ALL_METHODS[key]["label"]
    if key.startswith("aniso_l1min") and "_ell" in key:
        lmin, ell = key[len("aniso_l1min"):].rsplit("_ell", 1)
        return ablation_label(float(lmin), int(ell))
    return key


def reference_check(size: int, T: float, n: int = 500, ells=(0,) + WITHDRAWN_ELL, seed: int = 1000) -> dict:
    """The reverse chain of the ablation processes (lambda1_min = 0.025, correlation length l) with the network
    output set to zero: the score is the Gaussian reference alone (genmodel.networks.ScoreModel, 'reference'),
    from the moment-matched prior (the Table 1 replicates), with the Table 1 sampler. Per l: the fraction of
    pixels outside [-DIVERGED, DIVERGED] and the largest abs value at t = 0 -- what a reference error alone does."""
    from genmodel.networks import ScoreModel
    from genmodel.priors import GaussianPrior
    from genmodel.train import build_process

    class ZeroResidual(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    net = ZeroResidual()
    net.shape = (1, size, size)
    train = load_digits(size, "train")
    prof = PROFILES["full"]
    out = {}
    for ell in ells:
        proc = build_process(dict(ablation_process(ABLATION_CENTRE[0], ell, size, T), T=T, dt=prof["dt"]), size)
        model = ScoreModel.for_process(net, proc, parameterization="reference", data=train)
        prior = GaussianPrior.fit(proc, train, replicates=prof["replicates"], seed=0)
        with torch.no_grad():
            x = spde_sample(proc, model, n, steps=spde_sampler_steps(T, size), corrector_steps=prof["corrector"],
                            snr=0.16, prior=prior, seed=seed)
        a = x.abs()
        out[int(ell)] = {"outside": float((a > DIVERGED).double().mean()), "max_abs": float(a.max()), "n": n}
    return out


def rewrite(args, out: Path, figdir: Path, mode: str) -> int:
    """``--rewrite``: the document again from its raw JSON, every row as stored (the runs' own commits, machines
    and commands; this invocation's labels, withdrawals and text)."""
    raw_path = out.with_suffix(".json")
    if not raw_path.is_file():
        raise SystemExit(f"--rewrite: no raw table {raw_path}")
    t_start = time.perf_counter()
    rows, refs, grids, commands = kept_rows(raw_path, [], figdir, mode)
    raw = json.loads(raw_path.read_text())
    prof = raw["profile"]
    labels = {key: _label_of(key) for key, _ in rows}
    notes = [argv[argv.index("--note") + 1] for argv in commands.values() if "--note" in argv[:-1]]
    machine_line = ("each run's, as recorded (runs made on, below); notes of the commands: " + " | ".join(notes)
                    if notes else "each run's, as recorded") + f"; rewritten from {raw_path.name} on {machine()}"
    check = None
    if args.ablation:
        check = reference_check(prof["sizes"][0], prof["T"])
        raw["reference_check"] = check
    total = time.perf_counter() - t_start
    args.note = " | ".join(notes)
    write_doc(out, rows, refs, args, prof, total, grids, labels, commands, written_at=COMMIT_AT_START,
              machine_line=machine_line, reference_check=check)
    raw["rewritten"] = {"command": sys.argv, "commit": COMMIT_AT_START}
    raw_path.write_text(json.dumps(raw, indent=1, default=str))
    print(f"rewrote {out} from {raw_path}")
    return 0


def ablation_process(lmin: float, ell: int, size: int, T: float) -> dict:
    import spdekit
    from spdekit import schedules as S

    lam = float("inf") if math.isinf(lmin) else S.AnisotropyRamp(lmin, 0.5, T)
    spde = spdekit.AnisotropicSPDE(alpha1=S.Geometric(0.5, 2.0 * size, T), lambda1=lam,
                                   alpha2=S.Geometric(0.01, 2.0, T), lambda2=float("inf"),
                                   correlation_length=float(ell), stencil="paper")
    return {"preset": "custom", "spde": spde.to_dict()}


PROFILE: dict = {}
COMMIT_AT_START = ""


def run_all(tasks, workdir: Path, classifier, jobs: int) -> dict:
    """Every (key, size, seed, name, cfg) of ``tasks`` through :func:`run_one`: in this process, or in
    ``jobs`` worker processes (spawned: forking a process that has used OpenMP is unsafe; one
    torch/numba thread each)."""
    if jobs == 1:
        out = {}
        for _, _, _, name, cfg in tasks:
            print(f"=== {name} ===", flush=True)
            out[name] = run_one(name, cfg, workdir, classifier)
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        futures = {name: ex.submit(_worker, name, cfg, workdir, dict(PROFILE), COMMIT_AT_START)
                   for _, _, _, name, cfg in tasks}
        return {name: f.result() for name, f in futures.items()}


def run_status(tasks, workdir: Path) -> list[str]:
    """One line per run of ``tasks``: finished (with its FID and wall time), resumable (the step of its
    ``last.pt``), made with another config, or not started. Reads files only; trains nothing."""
    lines = []
    for _, _, _, name, cfg in tasks:
        out = workdir / name
        stored = out / "config.json"
        if stored.is_file() and json.loads(stored.read_text()) != _as_stored(cfg):
            state = "made with ANOTHER config (the run would stop; move the folder away)"
        elif (out / "result.json").is_file():
            r = json.loads((out / "result.json").read_text())
            state = (f"done: FID {r['fid']:.2f}, conf > 0.9 {r['confident_fraction']:.3f}, "
                     f"{r['wall_seconds'] / 60:.0f} min")
        elif (out / "last.pt").is_file():
            ck = torch.load(out / "last.pt", weights_only=True, map_location="cpu")
            state = f"resumable at step {ck.get('step')} of {cfg['train']['steps']}"
        else:
            state = "not started"
        lines.append(f"{name}: {state}")
    return lines


def _worker(name: str, cfg: dict, workdir: Path, profile: dict, commit_at_start: str) -> dict:
    """One run in a worker process: the parent's profile and commit, then :func:`run_one`."""
    global COMMIT_AT_START
    PROFILE.clear()
    PROFILE.update(profile)
    COMMIT_AT_START = commit_at_start
    return run_one(name, cfg, workdir, None, print, False)


def _missing(planned: dict, prof: dict) -> str:
    """What of the planned sizes and seeds ``prof`` does not cover, as the document says it ('' if nothing)."""
    left = [f"{k} {sorted(set(planned[k]) - set(prof[k]))}" for k in planned if set(planned[k]) - set(prof[k])]
    return ("This document covers part of the planned run; not run into it: " + ", ".join(left)
            + " (run them with the same command without --sizes / --seeds)." if left else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke-level run: 16 px, 1 seed, small net (< 15 min)")
    ap.add_argument("--ablation", action="store_true",
                    help=f"anisotropic preset with lambda1_min in {ABLATION_LAMBDA1_MIN} (l = 0), then l in "
                         f"{ABLATION_ELL} (lambda1_min = {ABLATION_CENTRE[0]}); default 16 px, seed 0")
    ap.add_argument("--methods", nargs="+", choices=list(ALL_METHODS), default=list(METHODS))
    ap.add_argument("--workdir", default=str(ROOT / "out" / "table1"),
                    help="checkpoints and per-run results (default out/table1, git-ignored)")
    ap.add_argument("--out", help="markdown output (default docs/table1[_quick][_ablation].md)")
    ap.add_argument("--figdir", default=str(ROOT / "docs" / "figures" / "table1"))
    ap.add_argument("--note", default="", help="a note on the machine for the header (e.g. 'shared with 2 jobs')")
    ap.add_argument("--steps", type=int, help="override the profile's training steps (for trying the script)")
    ap.add_argument("--n-samples", type=int, help="override the profile's number of samples per run")
    ap.add_argument("--sizes", type=int, nargs="+", choices=(16, 32), help="only these image sizes")
    ap.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: the profile's)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs in parallel processes, one thread each (finished runs are kept in --workdir, so a "
                         "long run can also be done in pieces: rerun the same command)")
    ap.add_argument("--keep-rows", action="store_true",
                    help="keep the rows of the sizes this command does not run from the raw JSON next to --out "
                         "(a table made in pieces, e.g. --sizes 16 here and --sizes 32 on a GPU machine; each "
                         "size's command is recorded)")
    ap.add_argument("--rewrite", action="store_true",
                    help="rewrite the document from its raw JSON (every row as stored; nothing trained or sampled; "
                         "with --ablation the withdrawn rows' reference check is run again, ~4 min)")
    ap.add_argument("--status", action="store_true",
                    help="list the runs of this command (done / resumable / not started) and stop")
    args = ap.parse_args(argv)
    global COMMIT_AT_START
    COMMIT_AT_START = commit()  # the code that runs (later edits of the tree do not change it)
    torch.set_num_threads(1)
    PROFILE.clear()
    PROFILE.update(PROFILES["quick" if args.quick else "full"])
    if args.ablation:
        PROFILE["sizes"] = list(PROFILE.get("ablation_sizes", PROFILE["sizes"]))
        PROFILE["seeds"] = list(PROFILE.get("ablation_seeds", PROFILE["seeds"]))
    planned = {"sizes": list(PROFILE["sizes"]), "seeds": list(PROFILE["seeds"])}
    if args.steps:
        PROFILE["steps"] = args.steps
    if args.n_samples:
        PROFILE["n_samples"] = PROFILE["n_samples_32px"] = args.n_samples
    if args.sizes:
        PROFILE["sizes"] = sorted(args.sizes)
    if args.seeds:
        PROFILE["seeds"] = sorted(args.seeds)
    PROFILE["missing"] = _missing(planned, PROFILE)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    prof = PROFILE
    mode = ("quick" if args.quick else "full") + ("_ablation" if args.ablation else "")
    workdir = Path(args.workdir) / mode
    name = "table1" + ("_quick" if args.quick else "") + ("_ablation" if args.ablation else "")
    out = Path(args.out) if args.out else ROOT / "docs" / f"{name}.md"
    figdir = Path(args.figdir)
    classifier = load_classifier()
    t_start = time.perf_counter()
    rows, grids, labels = {}, {}, {}
    jobs = []
    for size in prof["sizes"]:
        if args.ablation:
            for lmin, ell in ABLATION_CELLS:
                key = ablation_key(lmin, ell)
                labels[key] = ablation_label(lmin, ell)
                jobs.append((key, size, ablation_process(lmin, ell, size, prof["T"])))
        else:
            for method in args.methods:
                labels[method] = ALL_METHODS[method]["label"]
                jobs.append((method, size, None))
    tasks = []
    for key, size, override in jobs:
        for seed in prof["seeds"]:
            cfg = make_config(key if not args.ablation else "anisotropic", prof, size, seed, override)
            tasks.append((key, size, seed, f"{key}_{size}px_seed{seed}", cfg))
    if args.status:
        print("\n".join(run_status(tasks, workdir)))
        return 0
    if args.rewrite:
        return rewrite(args, out, figdir, mode)
    results = run_all(tasks, workdir, classifier, args.jobs)
    for key, size, seed, name, _ in tasks:
        rows.setdefault((key, size), []).append(results[name])
        if seed == prof["seeds"][0]:
            x = torch.load(workdir / name / "grid_samples.pt", weights_only=True)
            g = figdir / f"{mode}_{key}_{size}px.png"
            save_grid(x, g, nrow=8, title=f"{labels[key]}, {size} px, seed {seed}")
            grids[(key, size)] = g
    refs = {size: reference_row(size, classifier) for size in prof["sizes"]}
    commands = {size: sys.argv for size in prof["sizes"]}
    doc_prof = prof
    if args.keep_rows:
        k_rows, k_refs, k_grids, k_cmds = kept_rows(out.with_suffix(".json"), prof["sizes"], figdir, mode)
        for key, _ in k_rows:
            labels.setdefault(key, ALL_METHODS.get(key, {}).get("label", key))
        order = list(labels)
        rows = dict(sorted({**k_rows, **rows}.items(), key=lambda kv: (kv[0][1], order.index(kv[0][0]))))
        grids = dict(sorted({**k_grids, **grids}.items(), key=lambda kv: (kv[0][1], order.index(kv[0][0]))))
        refs = dict(sorted({**k_refs, **refs}.items()))
        commands = dict(sorted({**k_cmds, **commands}.items()))
        doc_prof = dict(prof, sizes=sorted({size for _, size in rows}))
        doc_prof["missing"] = _missing(planned, doc_prof)
    check = reference_check(prof["sizes"][0], prof["T"]) if args.ablation else None
    total = time.perf_counter() - t_start
    write_doc(out, rows, refs, args, doc_prof, total, grids, labels, commands if args.keep_rows else None,
              written_at=COMMIT_AT_START, reference_check=check)
    raw = {"profile": doc_prof, "rows": {f"{k[0]}_{k[1]}px": v for k, v in rows.items()},
           "reference": {str(k): v for k, v in refs.items()}, "total_seconds": total, "command": sys.argv,
           "commands": {str(k): v for k, v in commands.items()}}
    if check:
        raw["reference_check"] = check
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"wrote {out} and {out.with_suffix('.json')} in {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
