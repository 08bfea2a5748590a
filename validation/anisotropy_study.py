# ruff: noqa: E402
"""Does anisotropy help? The controlled study of issue 23, on two data sets, with paired seeds.

The paper (Section 5) says "the only difference between their methods and Ours (anisotropic) is the
introduction of anisotropy". Table 1 (validation/table1.py) cannot attribute anything to anisotropy: its
rows differ in more than that. Here every row has the same U-Net, training steps (3,600), batch,
learning-rate schedule, EMA, network evaluations per sample (NFE) and, for every SPDE row, the same time
measure (``time_weight_power = 1``: states drawn with probability ~ t_k / T, genmodel/losses.py):

    a   the paper's anisotropic preset, eq. (14)-(16) (alpha1 0.5 -> 2 * size, lambda1 the ramp (16) with
        lambda1_min = 0.025, alpha2 0.01 -> 2, lambda2 = inf, l = 0, the paper's stencil), path loss;
    b   row a with lambda1 = inf at every t: anisotropy switched off, NOTHING else changed (same alpha1,
        alpha2, stencil, solver, loss, sampler): the control that isolates anisotropy;
    c   the VE-SDE as Song et al. (2021) define it, written as an eq. (13) preset: sigma(t) = sigma_min
        (sigma_max / sigma_min)^(t / T) with sigma_min = 0.01 and sigma_max by Song & Ermon's rule
        (Technique 1 of "Improved Techniques for Training Score-Based Generative Models": the largest
        Euclidean distance between two training images), and their prior N(0, sigma_max^2 I);
    d   the VE-SDE row of Table 1 (alpha2 geometric 0.01 -> 2), for continuity;
    e   the isotropic heat SPDE of eq. (17) as Table 1 ran it ("Ours (isotropic)": alpha2 -> 0.5, the
        conservative stencil, the exact loss);
    f   flow matching, OT path (Lipman et al. 2022; no time measure: its own loss);
    l0.0125, l0.05   row a with lambda1_min = 0.0125 / 0.05 (with a and b: the lambda1 ablation, path loss).

Rows c, d, e (linear chains) keep Table 1's exact-Gaussian loss, as the issue defines them. Seeds: 5 for
rows a and b, 3 for every other cell. Data sets: ``digits16`` (scikit-learn digits, 16 px, as Table 1) with
every row, and ``sharp16`` (the 8x8 digits thresholded at mid-grey and upscaled nearest-neighbour: binary
images with sharp edges, generated here, nothing downloaded) with rows a, b, c, f; ``sharp16`` is scored
with its own classifier, trained by the project's recipe (genmodel.metrics.train_digits_classifier, as the
shipped digits classifier) on its training split.

Sampling: the main tables use ``--predictor`` (default "em": Euler-Maruyama, Table 1's budget: 264
predictor steps at 16 px with 1 Langevin corrector step, NFE 528; flow matching Heun with the same NFE).
Rows a and b are also sampled with the paper's sampler, Euler-Maruyama at Delta = dt (K = 2,000 steps, no
corrector) on 500 samples, so the conclusion does not rest on one sampler. The effect of anisotropy is the
paired difference a - b per training seed (the seed of the network's initialisation and of every random
stream of the run), with its mean and 95 % t-interval; a - c and a - f likewise. The ``--quick`` profile
(table1's: a small U-Net, 250 steps, one seed, 128 samples, 32 for EM at Delta = dt) checks the pipeline only.

Harness: validation/table1.py's (make_config, run_one, run folders, run_status, sample_and_score,
reference_row, commit, machine). Finished runs are kept in ``--workdir``; a rerun skips them and an
interrupted training resumes from its ``last.pt`` (an interrupted extra evaluation restarts from the run's
``model.pt``). The document is always written from every finished run of the whole plan (whatever command
made it), with what is left listed. Layout: ``WORKDIR/data`` (the sharp training split as .npz; the runs'
configs name it by its absolute path, so a moved workdir reads as another config), ``WORKDIR/classifiers``,
``WORKDIR/full|quick/<data set>_<row>_seed<k>/`` (table1's run folder, plus ``eval_<tag>.json`` and
``grid_<tag>.pt`` per extra evaluation) and ``commands.jsonl`` (the commands that made them).

    python validation/anisotropy_study.py --status                  # what is done / resumable / left
    python validation/anisotropy_study.py --jobs 1                  # the whole study (~30 h on one core)
    python validation/anisotropy_study.py --datasets sharp16 --jobs 1   # one data set
    python validation/anisotropy_study.py --rows a b --seeds 0 1    # a piece (finished runs are kept)
    python validation/anisotropy_study.py --report                  # only rewrite docs/anisotropy.md
    python validation/anisotropy_study.py --quick --rows a --datasets sharp16 --workdir /tmp/w  # smoke level

Writes ``docs/anisotropy.md`` (``docs/anisotropy_quick.md`` with ``--quick``; generated: command, commit,
machine, wall time in the header), its raw JSON next to it and sample grids under
``docs/figures/anisotropy/``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: see genmodel/__init__.py

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "validation"))  # spawned workers import table1 by name

import table1 as T1

import spdekit
from genmodel.cli import save_grid
from genmodel.data import load_digits
from genmodel.distributed import on_device, resolve_device
from genmodel.metrics import DEFAULT_CLASSIFIER, load_classifier, save_classifier, train_digits_classifier
from genmodel.priors import GaussianPrior
from genmodel.train import build_process, load_config, load_model
from spdekit import schedules as S

# ------------------------------------------------------------------------------------------ the plan
SIGMA_MIN_VE = 0.01  # Song et al. 2021 (VE-SDE): sigma_min = 0.01
ANISO_LAMBDA1_MIN = 0.025  # the paper's preset, eq. (16)
ABLATION_LAMBDA1_MIN = (0.0125, 0.05)
TIME_WEIGHT_POWER = 1.0  # the time measure of every SPDE row

# row -> label, the table1 method whose network / training / sampling settings it takes, its loss
ROWS = {
    "a": ("Ours (anisotropic), eq. 14-16, path loss", "anisotropic", "path"),
    "b": ("a with lambda1 = inf at every t (anisotropy off)", "anisotropic", "path"),
    "c": ("VE-SDE as Song et al. (eq. 13; sigma_max by Song & Ermon), prior N(0, sigma_max^2 I)", "ve_sde",
          "exact"),
    "d": ("VE-SDE of Table 1 (eq. 13, alpha2 0.01 -> 2)", "ve_sde", "exact"),
    "e": ("Ours (isotropic) of Table 1 (eq. 17: alpha2 -> 0.5, conservative stencil, exact loss)", "isotropic",
          "exact"),
    "f": ("Flow matching, OT path (Lipman et al.)", "flow_matching", "flow_matching"),
    "l0.0125": ("a with lambda1_min = 0.0125", "anisotropic", "path"),
    "l0.05": ("a with lambda1_min = 0.05", "anisotropic", "path"),
}
ROW_LAMBDA1_MIN = {"a": ANISO_LAMBDA1_MIN, "b": math.inf, "l0.0125": 0.0125, "l0.05": 0.05}
DATASETS = {
    "digits16": ("scikit-learn digits, 16 px (bilinear upscaling; as Table 1)", 16, tuple(ROWS)),
    "sharp16": ("sharp-edged digits, 16 px (8x8 digits thresholded at mid-grey, nearest-neighbour upscaling)", 16,
                ("a", "b", "c", "f")),
}
SEEDS = {"full": {"a": 5, "b": 5}, "quick": {}}  # seeds per row (others: DEFAULT_SEEDS)
DEFAULT_SEEDS = {"full": 3, "quick": 1}
EM_DT_ROWS = ("a", "b")  # also sampled with Euler-Maruyama at Delta = dt
EM_DT_SAMPLES = {"full": 500, "quick": 32}
PREDICTORS = ("em", "exponential")  # the SDE predictors at the Table 1 budget (same NFE); genmodel.samplers
# (comparison, what a better-than-b outcome means, what a worse one means)
PAIRS = (("a", "b", "anisotropy helps", "anisotropy hurts"),
         ("a", "c", "the anisotropic model beats the faithful VE-SDE",
          "the faithful VE-SDE beats the anisotropic model"),
         ("a", "f", "the anisotropic model beats flow matching", "flow matching beats the anisotropic model"))
METRICS = (("fid", "FID", True, "{:.2f}"), ("kid", "KID", True, "{:.4f}"),
           ("confidence_mean", "confidence", False, "{:.3f}"))  # (key, name, lower is better, format)
SHARP_THRESHOLD = 0.0  # mid-grey of [-1, 1]: a pixel of the 0..16 digits is white iff its value is > 8
CLASSIFIER_RECIPE = {"epochs": 40, "seed": 0}  # the shipped digits classifier's (docs/genmodel.md)


class Task(NamedTuple):
    dataset: str
    row: str
    seed: int
    name: str
    cfg: dict


class EvalSpec(NamedTuple):
    """An evaluation of a trained run besides table1.run_one's ``result.json`` (EM at the Table 1 budget)."""

    predictor: str
    steps: int
    corrector_steps: int
    n: int

    @property
    def tag(self) -> str:
        return f"{self.predictor}_{self.steps}x{self.corrector_steps}_n{self.n}"


# ------------------------------------------------------------------------------------------ data sets
def sharp_digits(image_size: int = 16, split: str = "train", holdout: float = 0.2, seed: int = 0,
                 return_labels: bool = False):
    """The sharp-edged digits: scikit-learn's 8x8 digits (the stratified split of
    :func:`genmodel.data.load_digits`) thresholded at mid-grey to {-1, 1} (white iff the 0..16 value is
    > 8) and upscaled nearest-neighbour to ``image_size`` (each pixel a block): binary images whose every
    edge is a jump of 2 between neighbours. Deterministic; (N, 1, S, S) float32."""
    if image_size not in (8, 16, 32):
        raise ValueError(f"image_size of the sharp digits must be 8, 16 or 32, got {image_size!r}")
    x, y = load_digits(8, split, holdout, seed, return_labels=True)
    f = image_size // 8
    b = torch.where(x > SHARP_THRESHOLD, 1.0, -1.0).repeat_interleave(f, 2).repeat_interleave(f, 3).contiguous()
    return (b, y) if return_labels else b


def dataset_images(ds: str, split: str) -> torch.Tensor:
    """The training ("train") or held-out ("test") images of data set ``ds``."""
    size = DATASETS[ds][1]
    return sharp_digits(size, split) if ds.startswith("sharp") else load_digits(size, split)


def sharp_data_path(workdir: Path, ds: str) -> Path:
    return workdir / "data" / f"{ds}_train.npz"


def classifier_path(workdir: Path, ds: str) -> Path:
    return DEFAULT_CLASSIFIER if ds.startswith("digits") else workdir / "classifiers" / f"{ds}_classifier.pt"


def data_config(ds: str, workdir: Path) -> dict:
    """The [data] table of a run: the digits loader, or the sharp training split written as an .npz
    (genmodel's "images" loader; held out: nothing, the held-out split is scored here)."""
    size = DATASETS[ds][1]
    if ds.startswith("digits"):
        return {"dataset": "digits", "image_size": size, "holdout": 0.2, "seed": 0}
    return {"dataset": "images", "path": str(sharp_data_path(workdir, ds)), "image_size": size, "holdout": 0.0,
            "seed": 0}


def write_sharp_data(workdir: Path, ds: str) -> Path:
    """Write (or keep, when identical) the sharp training split as the .npz the runs read."""
    path = sharp_data_path(workdir, ds)
    x = dataset_images(ds, "train").numpy()
    if path.is_file():
        with np.load(path) as z:
            if z["images"].shape == x.shape and np.array_equal(z["images"], x):
                return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, images=x)
    os.replace(tmp, path)
    return path


def train_sharp_classifier(ds: str, path: Path, log=print) -> Path:
    """The classifier of a sharp data set: :func:`genmodel.metrics.train_digits_classifier` (the recipe of
    the shipped digits classifier: 40 epochs, seed 0, shifts and noise as augmentation) with its digits
    loader swapped for :func:`sharp_digits` while it runs; held-out accuracy stored in its meta."""
    import genmodel.data as gdata

    size = DATASETS[ds][1]
    torch.set_num_threads(1)
    with mock.patch.object(gdata, "load_digits", sharp_digits):
        model, acc = train_digits_classifier(size, CLASSIFIER_RECIPE["epochs"], CLASSIFIER_RECIPE["seed"], log=log)
    return save_classifier(model, path, {"accuracy_heldout": acc, "dataset": ds, "image_size": size,
                                         **CLASSIFIER_RECIPE, "recipe": "genmodel.metrics.train_digits_classifier"})


def prepare_dataset(ds: str, workdir: Path, log=print) -> None:
    """Everything a data set's runs read before training: the sharp .npz and the sharp classifier."""
    if ds.startswith("sharp"):
        write_sharp_data(workdir, ds)
        if not classifier_path(workdir, ds).is_file():
            log(f"[{ds}] training its classifier (once; kept in {classifier_path(workdir, ds)})")
            train_sharp_classifier(ds, classifier_path(workdir, ds), log)


# ------------------------------------------------------------------------------------------ rows
def song_ermon_sigma_max(images, chunk: int = 1024) -> float:
    """Technique 1 of Song & Ermon (2020): sigma_max = max_{i, j} |x_i - x_j|_2 over the training images
    (flattened), exactly (all pairs, float64, |x|^2 + |y|^2 - 2 x.y in chunks of ``chunk`` rows)."""
    x = np.asarray(torch.as_tensor(images), dtype=np.float64)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"images: need at least 2 images, got shape {x.shape}")
    x = x.reshape(x.shape[0], -1)
    sq = (x * x).sum(1)
    best = 0.0
    for i in range(0, x.shape[0], chunk):
        d2 = sq[i:i + chunk, None] + sq[None] - 2.0 * x[i:i + chunk] @ x.T
        best = max(best, float(d2.max()))
    return math.sqrt(max(best, 0.0))


def ve_alpha2(sigma_min: float, sigma_max: float, T: float) -> S.Geometric:
    """Song et al.'s VE-SDE as an eq. (13) preset on [0, T]: sigma(t) = sigma_min (sigma_max / sigma_min)^(t / T)
    is the standard deviation of the noise, so alpha2(t) = sqrt(d sigma^2 / dt) = sigma(t) sqrt(2 ln(sigma_max /
    sigma_min) / T), the geometric transition (15) from c sigma_min to c sigma_max, c = sqrt(2 ln(r) / T)
    (int_0^T alpha2^2 dt = sigma_max^2 - sigma_min^2)."""
    if not 0 < sigma_min < sigma_max or not math.isfinite(sigma_max):
        raise ValueError(f"sigma_min, sigma_max must satisfy 0 < sigma_min < sigma_max < inf, got {sigma_min}, "
                         f"{sigma_max}")
    c = math.sqrt(2.0 * math.log(sigma_max / sigma_min) / T)
    return S.Geometric(c * sigma_min, c * sigma_max, T)


def song_prior(sigma_max: float, size: int) -> GaussianPrior:
    """Song et al.'s prior N(0, sigma_max^2 I) on (1, size, size) images."""
    return GaussianPrior(np.zeros((1, size, size)), sigma_max * np.eye(size * size), "full")


def anisotropic_spde(size: int, T: float, lambda1_min: float) -> dict:
    """The paper's anisotropic preset, eq. (14)-(16), on the paper's stencil, with the ramp's lambda1_min
    replaced (k and T of the ramp kept); ``inf``: lambda1 = inf at every t. Nothing else changes."""
    spde = spdekit.AnisotropicSPDE.paper_anisotropic(size, T, stencil="paper")
    d = spde.to_dict()
    if math.isinf(lambda1_min):
        d["lambda1"] = S.Constant(math.inf).to_dict()
    elif lambda1_min != spde.lambda1.lambda_min:
        d["lambda1"] = S.AnisotropyRamp(lambda1_min, spde.lambda1.k, T).to_dict()
    return d


def row_process(row: str, size: int, T: float, sigma_max: float | None) -> dict | None:
    """The [process] table of ``row`` (without T and dt); None: the table1 method's own (rows d, e, f)."""
    if row in ROW_LAMBDA1_MIN:
        return {"preset": "custom", "spde": anisotropic_spde(size, T, ROW_LAMBDA1_MIN[row])}
    if row == "c":
        if sigma_max is None:
            raise ValueError("row c needs sigma_max (Song & Ermon's rule on the training split)")
        return {"preset": "pure_noise", "stencil": "conservative",
                "alpha2": ve_alpha2(SIGMA_MIN_VE, sigma_max, T).to_dict()}
    return None


def row_config(row: str, ds: str, prof: dict, seed: int, workdir: Path, sigma_max: float | None = None) -> dict:
    """A run's config: table1's (network, training, EMA, sampler budget) for the row's method, the row's
    process and loss, the time measure of every SPDE row, the data set's [data] table."""
    label, method, loss = ROWS[row]
    size = DATASETS[ds][1]
    cfg = T1.make_config(method, prof, size, seed)
    proc = row_process(row, size, prof["T"], sigma_max)
    if proc is not None:
        cfg["process"] = {**proc, "T": prof["T"], "dt": prof["dt"]}
    cfg["train"]["loss"] = loss
    if loss != "flow_matching":
        cfg["train"]["time_weight_power"] = TIME_WEIGHT_POWER
    cfg["data"] = data_config(ds, workdir)
    return load_config(cfg)


def seeds_for(row: str, mode: str) -> list[int]:
    return list(range(SEEDS[mode].get(row, DEFAULT_SEEDS[mode])))


def run_name(ds: str, row: str, seed: int) -> str:
    return f"{ds}_{row}_seed{seed}"


def plan(prof: dict, mode: str, workdir: Path, datasets=None, rows=None, seeds=None) -> list[Task]:
    """Every run of the study (filtered by ``datasets``, ``rows``, ``seeds``), ordered seed by seed so
    that an interrupted study has whole pairs."""
    tasks = []
    sig = {}
    for ds, (_, _, ds_rows) in DATASETS.items():
        if datasets and ds not in datasets:
            continue
        for row in ds_rows:
            if rows and row not in rows:
                continue
            for seed in seeds_for(row, mode):
                if seeds is not None and seed not in seeds:
                    continue
                if row == "c" and ds not in sig:
                    sig[ds] = song_ermon_sigma_max(dataset_images(ds, "train"))
                cfg = row_config(row, ds, prof, seed, workdir, sig.get(ds))
                tasks.append(Task(ds, row, seed, run_name(ds, row, seed), cfg))
    return sorted(tasks, key=lambda t: (t.seed, list(DATASETS).index(t.dataset), list(ROWS).index(t.row)))


def extra_evals(task: Task, settings: dict) -> list[EvalSpec]:
    """The evaluations of a run besides result.json: the ``--predictor`` one when it is not "em" (SPDE
    rows), and Euler-Maruyama at Delta = dt (K steps, no corrector) for rows a and b."""
    out = []
    samp, proc = task.cfg["sampling"], task.cfg["process"]
    spde_row = ROWS[task.row][2] != "flow_matching"
    if spde_row and settings["predictor"] != "em":
        out.append(EvalSpec(settings["predictor"], samp["steps"], samp["corrector_steps"], settings["n_samples"]))
    if task.row in EM_DT_ROWS:
        out.append(EvalSpec("em", round(proc["T"] / proc["dt"]), 0, settings["em_dt_samples"]))
    return out


def main_eval_file(task: Task, settings: dict) -> str:
    """The file of the evaluation the main tables use: result.json (EM) or the ``--predictor`` one."""
    specs = extra_evals(task, settings)
    if settings["predictor"] != "em" and ROWS[task.row][2] != "flow_matching":
        return f"eval_{specs[0].tag}.json"
    return "result.json"


# ------------------------------------------------------------------------------------------ running
def row_prior(task: Task) -> GaussianPrior | None:
    """Row c samples from Song et al.'s prior N(0, sigma_max^2 I); the others from the model's stored one."""
    if task.row != "c":
        return None
    a2 = S.schedule_from_dict(task.cfg["process"]["alpha2"])
    c = math.sqrt(2.0 * math.log(a2.vmax / a2.vmin) / a2.T)
    return song_prior(a2.vmax / c, DATASETS[task.dataset][1])


def run_extra_eval(task: Task, run_dir: Path, spec: EvalSpec, classifier, heldout, log=print,
                   progress: bool = True) -> dict:
    """One evaluation ``spec`` of a trained run (its model.pt), kept as ``eval_<tag>.json`` (skipped when
    it exists), scored like table1.run_one (table1.sample_and_score)."""
    path = run_dir / f"eval_{spec.tag}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    model, process, stored, ck = load_model(run_dir / "model.pt")
    dev = resolve_device(task.cfg["train"].get("device", "auto"))
    model = on_device(model, dev.type)
    samp = dict(ck["sampling"], predictor=spec.predictor, steps=spec.steps, corrector_steps=spec.corrector_steps)
    prior = row_prior(task)
    prior = stored if prior is None else prior
    x, ev = T1.sample_and_score(model, process, prior, samp, DATASETS[task.dataset][1], spec.n, task.seed,
                                classifier, heldout, progress)
    res = {"name": task.name, "eval": spec.tag, **spec._asdict(), **ev, "commit": T1.COMMIT_AT_START,
           "timed_on": T1.timed_on(dev), "machine": T1.machine(), "wall_seconds": time.perf_counter() - t0}
    torch.save(x[:64].clone(), run_dir / f"grid_{spec.tag}.pt")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1, default=str))
    os.replace(tmp, path)
    log(f"[{task.name}] {spec.tag}: FID {res['fid']:.2f} KID {res['kid']:.4f} conf {res['confidence_mean']:.3f}")
    return res


def run_task(task: Task, workdir: Path, settings: dict, classifier=None, log=print, progress: bool = True) -> dict:
    """Train / resume / reuse one run (table1.run_one: its data set's held-out split and classifier, row c's
    prior), then its extra evaluations. Returns {"result": ..., "evals": {tag: ...}}."""
    torch.set_num_threads(1)
    if classifier is None:
        classifier = load_classifier(classifier_path(Path(settings["root"]), task.dataset))
    heldout = dataset_images(task.dataset, "test")
    res = T1.run_one(task.name, task.cfg, workdir, classifier, log, progress, heldout=heldout,
                     n_samples=settings["n_samples"], prior=row_prior(task))
    evals = {s.tag: run_extra_eval(task, workdir / task.name, s, classifier, heldout, log, progress)
             for s in extra_evals(task, settings)}
    return {"result": res, "evals": evals}


def _worker(task: Task, workdir: Path, settings: dict, commit_at_start: str) -> dict:
    """One run in a spawned worker process (one thread), with the parent's commit."""
    T1.COMMIT_AT_START = commit_at_start
    return run_task(task, workdir, settings, None, print, False)


def run_all(tasks: list[Task], workdir: Path, settings: dict, jobs: int) -> list[str]:
    """Every task, here (``jobs`` = 1) or in ``jobs`` spawned workers; returns the names of failed runs
    (the others are kept: a failure does not stop the study)."""
    failed = []
    if jobs == 1:
        for t in tasks:
            print(f"=== {t.name} ===", flush=True)
            try:
                run_task(t, workdir, settings)
            except Exception as exc:  # noqa: BLE001 - report, keep going
                print(f"[{t.name}] FAILED: {exc!r}", flush=True)
                failed.append(t.name)
        return failed
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        futures = {t.name: ex.submit(_worker, t, workdir, settings, T1.COMMIT_AT_START) for t in tasks}
        for name, f in futures.items():
            try:
                f.result()
            except Exception as exc:  # noqa: BLE001
                print(f"[{name}] FAILED: {exc!r}", flush=True)
                failed.append(name)
    return failed


# ------------------------------------------------------------------------------------------ status
def status_lines(tasks: list[Task], workdir: Path, settings: dict) -> list[str]:
    """table1.run_status per run, each with its extra evaluations' state, and a summary. Reads files only."""
    base = T1.run_status([(t.row, 16, t.seed, t.name, t.cfg) for t in tasks], workdir)
    lines, counts = [], {"done": 0, "resumable": 0, "not started": 0, "ANOTHER": 0}
    evals_left = 0
    for t, line in zip(tasks, base):
        state = line.split(": ", 1)[1]
        counts[next(k for k in counts if k in state)] += 1
        ex = []
        for s in extra_evals(t, settings):
            done = (workdir / t.name / f"eval_{s.tag}.json").is_file()
            evals_left += not done
            ex.append(f"{s.tag} {'done' if done else 'left'}")
        lines.append(line + (f" | {', '.join(ex)}" if ex else ""))
    lines.append(f"{len(tasks)} runs: {counts['done']} done, {counts['resumable']} resumable, "
                 f"{counts['not started']} not started, {counts['ANOTHER']} made with another config; "
                 f"{evals_left} extra evaluation(s) left")
    return lines


def data_status(workdir: Path, datasets) -> list[str]:
    out = []
    for ds in datasets:
        if ds.startswith("sharp"):
            have = classifier_path(workdir, ds).is_file()
            out.append(f"{ds}: classifier {'trained' if have else 'not trained yet (trained before its first run)'}")
    return out


# ------------------------------------------------------------------------------------------ statistics
def paired_differences(x: dict, y: dict, level: float = 0.95) -> dict:
    """Paired differences d_s = x_s - y_s over the seeds s both have (finite values): their mean, sample
    standard deviation and the two-sided t-interval mean -+ t_{(1 + level) / 2, n - 1} sd / sqrt(n)
    (Student's t, scipy.stats.t); no interval for n < 2."""
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    seeds = sorted(s for s in set(x) & set(y) if np.isfinite(x[s]) and np.isfinite(y[s]))
    d = np.array([x[s] - y[s] for s in seeds], dtype=np.float64)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
    return {"seeds": seeds, "diffs": d.tolist(), "n": n, "mean": mean, "sd": sd, "lo": mean - half,
            "hi": mean + half, "level": level}


def verdict(stat: dict, lower_is_better: bool) -> str:
    """"helps" (the interval lies on the side where x is better than y), "hurts" (the other side),
    "inside" (the interval contains 0), or "no interval" (fewer than two pairs)."""
    lo, hi = stat["lo"], stat["hi"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no interval"
    if hi < 0:
        return "helps" if lower_is_better else "hurts"
    if lo > 0:
        return "hurts" if lower_is_better else "helps"
    return "inside"


# ------------------------------------------------------------------------------------------ collecting
def collect(tasks: list[Task], workdir: Path, settings: dict) -> dict:
    """{(dataset, row): {seed: {"main": result or None, "em_dt": eval or None, "result": result.json}}}
    from the finished files of ``tasks``."""
    out: dict = {}
    for t in tasks:
        d = workdir / t.name
        entry = {}
        for key, fname in (("result", "result.json"), ("main", main_eval_file(t, settings))):
            entry[key] = json.loads((d / fname).read_text()) if (d / fname).is_file() else None
        em = [s for s in extra_evals(t, settings) if s.predictor == "em" and s.corrector_steps == 0]
        entry["em_dt"] = (json.loads((d / f"eval_{em[0].tag}.json").read_text())
                          if em and (d / f"eval_{em[0].tag}.json").is_file() else None)
        out.setdefault((t.dataset, t.row), {})[t.seed] = entry
    return out


def metric_by_seed(cells: dict, ds: str, row: str, key: str, which: str = "main") -> dict:
    return {s: e[which][key] for s, e in cells.get((ds, row), {}).items() if e.get(which)}


def paired_table(cells: dict, ds: str) -> list[dict]:
    """Every paired comparison of PAIRS (and a - b with EM at Delta = dt) on data set ``ds``."""
    out = []
    for x, y, better, worse in PAIRS:
        for which in ("main", "em_dt"):
            if which == "em_dt" and y not in EM_DT_ROWS:
                continue
            for key, name, lower, fmt in METRICS:
                st = paired_differences(metric_by_seed(cells, ds, x, key, which), metric_by_seed(cells, ds, y, key,
                                                                                                   which))
                if st["n"]:
                    out.append({"x": x, "y": y, "sampler": which, "metric": key, "name": name, "fmt": fmt,
                                "verdict": verdict(st, lower), "better": better, "worse": worse, **st})
    return out


def statement(p: dict) -> str:
    """One generated sentence from a paired comparison's interval."""
    f = p["fmt"]
    ci = (f"95 % CI [{f.format(p['lo'])}, {f.format(p['hi'])}]" if p["n"] > 1 else "no interval")
    what = {"helps": p["better"], "hurts": p["worse"], "inside": "the difference is inside the interval (no "
            "effect resolved at this number of seeds)", "no interval": "one seed: no interval"}[p["verdict"]]
    return (f"{p['name']}: {what} ({p['x']} - {p['y']} = {f.format(p['mean'])}, {ci}, {p['n']} seed"
            f"{'s' if p['n'] != 1 else ''})")


def prior_comparison(ds: str, prof: dict, sigma_max: float) -> dict:
    """Row c's prior N(0, sigma_max^2 I) against the moment-matched Gaussian of its chain at T (exact for
    the linear chain under the empirical data law; genmodel.priors.GaussianPrior.fit): the chain's noise
    variance at T, the moment-matched per-pixel standard deviations, the largest |mean| and the KL divergence
    KL(moment-matched || Song) per pixel."""
    size = DATASETS[ds][1]
    proc = build_process({**row_process("c", size, prof["T"], sigma_max), "T": prof["T"], "dt": prof["dt"]}, size)
    mm = GaussianPrior.fit(proc, dataset_images(ds, "train"))
    C = mm.factor @ mm.factor.T
    D = C.shape[0]
    s2 = sigma_max**2
    m = mm.mean.reshape(-1)
    logdet = np.linalg.slogdet(C)[1]
    kl = 0.5 * (np.trace(C) / s2 + m @ m / s2 - D + D * math.log(s2) - logdet)
    sd = np.sqrt(np.diag(C))
    return {"sigma_max": sigma_max, "chain_sd_T": float(math.sqrt(proc.sigma2[-1])), "mm_sd_min": float(sd.min()),
            "mm_sd_max": float(sd.max()), "mm_mean_abs_max": float(np.abs(m).max()), "kl_per_pixel": float(kl / D)}


# ------------------------------------------------------------------------------------------ the document
def _f(v, fmt):
    return "-" if v is None or not np.isfinite(v) else fmt.format(v)


def _commit_short(c) -> str:
    return str(c).split()[0] + ("*" if "uncommitted" in str(c) else "")


def write_grids(cells: dict, workdir: Path, figdir: Path, mode: str) -> dict:
    """One PNG per (data set, row, sampler) from the first finished seed's stored samples."""
    grids = {}
    for (ds, row), seeds in cells.items():
        for which in ("main", "em_dt"):
            done = [s for s, e in sorted(seeds.items()) if e.get(which)]
            if not done:
                continue
            e = seeds[done[0]][which]
            src = workdir / run_name(ds, row, done[0]) / (f"grid_{e['eval']}.pt" if "eval" in e else "grid_samples.pt")
            if not src.is_file():
                continue
            extra = ", EM at dt" if which == "em_dt" else ""
            g = figdir / f"{mode}_{ds}_{row}{'_em_dt' if extra else ''}.png"
            save_grid(torch.load(src, weights_only=True), g, nrow=8, title=f"{ds}, row {row}{extra}, seed {done[0]}")
            grids[(ds, row, which)] = g
    return grids


def _row_table(cells: dict, ds: str, rows, which: str) -> list[str]:
    """Mean ± sample sd over the finished seeds of each row (``which``: "main" or "em_dt")."""
    wall = "min per run (train + sample)" if which == "main" else "min per evaluation"
    lines = ["| row | seeds | FID ↓ | KID ↓ | confidence ↑ | conf > 0.9 ↑ | IS analogue ↑ | pixels abs > "
             f"{T1.DIVERGED} | NFE | {wall} |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        rs = [e[which] for _, e in sorted(cells.get((ds, row), {}).items()) if e.get(which)]
        if not rs:
            continue
        lines.append(f"| {row} | {len(rs)} | {T1._ms([r['fid'] for r in rs], '{:.2f}')} | "
                     f"{T1._ms([r['kid'] for r in rs], '{:.4f}')} | "
                     f"{T1._ms([r['confidence_mean'] for r in rs], '{:.3f}')} | "
                     f"{T1._ms([r['confident_fraction'] for r in rs], '{:.3f}')} | "
                     f"{T1._ms([r['is_analogue'] for r in rs], '{:.2f}')} | "
                     f"{T1._ms([r['diverged_fraction'] for r in rs], '{:.4f}')} | {rs[0]['nfe']} | "
                     f"{T1._ms([r.get('wall_seconds', math.nan) / 60 for r in rs], '{:.0f}')} |")
    return lines


def _seed_table(cells: dict, ds: str, rows) -> list[str]:
    """Every finished run: its metrics, timings, EM-at-dt result and commit."""
    lines = ["| row | seed | FID | KID | confidence | conf > 0.9 | train s / 1k steps | sample s / image | "
             "EM at dt: FID / conf | wall min | commit |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for s, e in sorted(cells.get((ds, row), {}).items()):
            r, em = e.get("main"), e.get("em_dt")
            if not r:
                continue
            wall = (e["result"] or {}).get("wall_seconds", math.nan) + (em or {}).get("wall_seconds", 0.0)
            lines.append(f"| {row} | {s} | {r['fid']:.2f} | {r['kid']:.4f} | {r['confidence_mean']:.3f} | "
                         f"{r['confident_fraction']:.3f} | {_f((e['result'] or {}).get('train_s_per_1k'), '{:.0f}')} | "
                         f"{r['sample_s_per_image']:.3f} | "
                         + (f"{em['fid']:.2f} / {em['confidence_mean']:.3f}" if em else "-")
                         + f" | {_f(wall / 60, '{:.0f}')} | {_commit_short(r.get('commit', '?'))} |")
    return lines


def write_doc(path: Path, tasks: list[Task], cells: dict, refs: dict, priors: dict, classifiers: dict, grids: dict,
              settings: dict, prof: dict, commands: list, total_seconds: float) -> None:
    """The generated document (see the module doc)."""
    mode = settings["mode"]
    done = [e for c in cells.values() for e in c.values() if e.get("main")]
    walls = [e["result"].get("wall_seconds", 0.0) for c in cells.values() for e in c.values() if e.get("result")]
    walls += [e["em_dt"].get("wall_seconds", 0.0) for c in cells.values() for e in c.values() if e.get("em_dt")]
    left = [t.name for t in tasks if not cells[(t.dataset, t.row)][t.seed].get("main")]
    commits = sorted({_commit_short(e["main"].get("commit", "?")) for e in done})
    net = prof["network"]
    lines = [
        "<!-- generated by validation/anisotropy_study.py; do not edit by hand -->",
        f"# Does anisotropy help? A controlled study (issue 23){' — SMOKE LEVEL (--quick)' if mode == 'quick' else ''}",
        "",
        *[f"* command: `python validation/anisotropy_study.py {' '.join(c)}`" for c in commands],
        f"* runs made at commit(s) {', '.join(commits) or '-'} (* = with uncommitted changes); this document "
        f"written at commit {T1.COMMIT_AT_START or T1.commit()}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
        f"* machine: {T1.machine()}" + (f"; {settings['note']}" if settings.get("note") else ""),
        *T1._run_machines({k: [e["main"] for e in c.values() if e.get("main")] for k, c in cells.items()}),
        f"* wall time: {sum(walls) / 60:.1f} min for the {len(done)} finished runs (training, sampling, scoring, "
        f"extra evaluations), {total_seconds / 60:.1f} min for this invocation (finished runs are read back)",
        "",
    ]
    if mode == "quick":
        lines += ["**Smoke level.** `--quick` trains a small U-Net for "
                  f"{prof['steps']} steps with one seed and scores {settings['n_samples']} samples: it checks the "
                  "pipeline end to end. It answers nothing about anisotropy.", ""]
    if left:
        lines += [f"**Not complete.** {len(left)} of {len(tasks)} runs are not finished: {', '.join(left)}. "
                  "The tables below hold the finished ones; `--status` lists the state of each.", ""]
    lines += [
        "## Setup (the same for every row)",
        "",
        f"* network: U-Net ch {net['ch']}, ch_mult {net['ch_mult']}, {net['num_res_blocks']} res block(s), attention "
        f"at {net['attn_resolutions']}, score_param '{net['score_param']}' (SPDE rows); training {prof['steps']} "
        f"steps, batch {prof['batch']}, Adam lr {prof['lr']} (warm-up {prof['warmup']}"
        + (", cosine decay to 0.1 lr" if prof.get("lr_schedule") == "cosine" else "")
        + f"), EMA {prof['ema']}, grad clip 1, one torch thread per run (validation/table1.py's settings)",
        f"* time measure: `time_weight_power = {TIME_WEIGHT_POWER:g}` for every SPDE row (rows a-e and the "
        "ablation); flow matching draws its times uniformly (its own loss)",
        f"* chains: T = {prof['T']}, dt = {prof['dt']} (K = {round(prof['T'] / prof['dt'])} steps)",
        f"* main sampler: predictor '{settings['predictor']}', {T1.spde_sampler_steps(prof['T'], 16)} steps at 16 px "
        f"with {prof['corrector']} Langevin corrector step(s) each (snr 0.16), model's moment-matched prior (row c: "
        "N(0, sigma_max^2 I)); flow matching: Heun with the same NFE; "
        f"{settings['n_samples']} samples per run" + (" (EM: table1.run_one's result.json; another predictor: an "
                                                       "extra evaluation of the same model)"
                                                       if settings["predictor"] != "em" else ""),
        f"* second sampler for rows a and b: Euler-Maruyama at Delta = dt ({round(prof['T'] / prof['dt'])} steps, "
        f"no corrector: the paper's sampler), {settings['em_dt_samples']} samples",
        "* metrics: FID / KID on the data set's classifier's 128-d features against its held-out split, mean "
        "top-class probability (confidence), fraction above 0.9, IS analogue; NOT Inception features",
        f"* seeds: {', '.join(f'{r}: {len(seeds_for(r, mode))}' for r in ROWS)}; paired differences are per "
        "training seed (the seed of the network's initialisation and of the run's random streams), mean and 95 % "
        "t-interval (scipy.stats.t)",
        "",
        "| row | definition | process | loss |",
        "|---|---|---|---|",
    ]
    for row, (label, _, loss) in ROWS.items():
        t = next((t for t in tasks if t.row == row), None)
        proc = "-" if t is None else _process_text(t.cfg["process"], DATASETS[t.dataset][1])
        lines.append(f"| {row} | {label} | {proc} | {loss} |")
    lines.append("")
    for ds, (ds_label, _, ds_rows) in DATASETS.items():
        if not any(k[0] == ds for k in cells):
            continue
        lines += _dataset_section(ds, ds_label, ds_rows, cells, refs, priors, classifiers, grids, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _schedule_text(d: dict) -> str:
    kind = d["schedule"]
    if kind == "constant":
        return "inf" if math.isinf(d["v"]) else f"{d['v']:g}"
    if kind == "geometric":
        return f"{d['vmin']:.4g} -> {d['vmax']:.4g} (geometric, eq. 15)"
    if kind == "anisotropy_ramp":
        return f"ramp (16) from {d['lambda_min']:g}"
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _process_text(p: dict, size: int = 16) -> str:
    """A row's process in words, from the SPDE its [process] table builds."""
    if p.get("preset") == "flow_matching":
        return f"OT path, sigma_min {p.get('sigma_min')}"
    d = build_process(p, size).spde.to_dict()
    return (f"alpha1 {_schedule_text(d['alpha1'])}, lambda1 {_schedule_text(d['lambda1'])}, alpha2 "
            f"{_schedule_text(d['alpha2'])}, lambda2 {_schedule_text(d['lambda2'])}, {d['stencil']} stencil")


def _finished(cells: dict, ds: str, row: str, which: str = "main") -> list:
    return [e[which] for _, e in sorted(cells.get((ds, row), {}).items()) if e.get(which)]


def _dataset_header(ds: str, refs: dict, priors: dict, classifiers: dict) -> list[str]:
    """The data set's classifier, its floor and row c's sigma_max and prior check."""
    lines = [f"* classifier: {classifiers[ds]}"] if ds in classifiers else []
    if ds in refs:
        r = refs[ds]
        lines += [f"* floor (held-out vs as many training images, {r['n']}): FID {r['fid']:.2f}, KID {r['kid']:.4f}, "
                  f"confidence {r['confidence_mean']:.3f}, conf > 0.9 {r['confident_fraction']:.3f}, IS analogue "
                  f"{r['is_analogue']:.2f}"]
    if ds in priors:
        p = priors[ds]
        lines += [f"* row c: sigma_max = {p['sigma_max']:.3f} (Song & Ermon's rule on the training split); the "
                  f"chain's noise standard deviation at T is {p['chain_sd_T']:.3f}; the moment-matched prior of that "
                  f"chain has per-pixel standard deviations {p['mm_sd_min']:.3f} to {p['mm_sd_max']:.3f} and means up "
                  f"to {p['mm_mean_abs_max']:.3f} in absolute value: KL(moment-matched || N(0, sigma_max^2 I)) = "
                  f"{p['kl_per_pixel']:.2e} nats per pixel"]
    return lines + [""]


def _diverged_lines(cells: dict, ds: str, rows) -> list[str]:
    """Runs whose reverse chain ran away (table1's criterion): their metrics measure that."""
    bad = [f"{r.get('name', row)}{' (EM at dt)' if which == 'em_dt' else ''}: {100 * r['diverged_fraction']:.0f} % "
           f"of the pixels beyond {T1.DIVERGED}, up to {r['max_abs_before_clamp']:.3g}"
           for row in rows for which in ("main", "em_dt") for r in _finished(cells, ds, row, which)
           if r.get("diverged_fraction", 0) > 0.01 and r.get("max_abs_before_clamp", 0) > 10]
    return (["**Diverged samplers** (before clipping to [-1, 1]): " + "; ".join(bad) + ". Their metrics measure a "
             "runaway reverse chain.", ""] if bad else [])


def _paired_lines(pairs: list[dict]) -> list[str]:
    if not pairs:
        return ["No pairs yet (a pair is both rows finished at the same seed).", ""]
    lines = ["| x - y | sampler | metric | n | per seed | mean | 95 % t-interval | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        f = p["fmt"]
        ci = f"[{f.format(p['lo'])}, {f.format(p['hi'])}]" if p["n"] > 1 else "-"
        lines.append(f"| {p['x']} - {p['y']} | {'EM at dt' if p['sampler'] == 'em_dt' else 'main'} | {p['name']} | "
                     f"{p['n']} | {' / '.join(f.format(v) for v in p['diffs'])} | {f.format(p['mean'])} | {ci} | "
                     f"{p['verdict']} |")
    return lines + [""]


def _statement_lines(pairs: list[dict]) -> list[str]:
    """The plain statement: one generated sentence per comparison, sampler and metric."""
    questions = {"b": "Does anisotropy help (a vs b)?", "c": "Does the anisotropic model beat the faithful VE-SDE "
                 "(a vs c)?", "f": "Does the anisotropic model beat flow matching (a vs f)?"}
    lines = []
    for x, y, _, _ in PAIRS:
        for which in ("main", "em_dt"):
            ps = [p for p in pairs if p["x"] == x and p["y"] == y and p["sampler"] == which]
            if ps:
                lines.append(f"* **{questions[y]}**{' (Euler-Maruyama at Delta = dt)' if which == 'em_dt' else ''} "
                             + "; ".join(statement(p) for p in ps) + ".")
    return (lines or ["Nothing to state yet: no paired seeds."]) + [""]


def _dataset_section(ds, ds_label, ds_rows, cells, refs, priors, classifiers, grids, path) -> list[str]:
    """Everything the document says about one data set."""
    lines = [f"## {ds}: {ds_label}", "", *_dataset_header(ds, refs, priors, classifiers)]
    if not any(_finished(cells, ds, r) for r in ds_rows):
        return lines + ["No finished run yet.", ""]
    lines += ["### Per row (mean ± sample sd over seeds; main sampler)", "", *_row_table(cells, ds, ds_rows, "main"),
              "", *_diverged_lines(cells, ds, ds_rows)]
    if any(_finished(cells, ds, r, "em_dt") for r in EM_DT_ROWS):
        lines += ["Rows a and b with Euler-Maruyama at Delta = dt:", "", *_row_table(cells, ds, EM_DT_ROWS, "em_dt"),
                  ""]
    abl = [r for r in ("l0.0125", "a", "l0.05", "b") if r in ds_rows]
    if len(abl) == 4 and any(_finished(cells, ds, r) for r in ("l0.0125", "l0.05")):
        lines += ["### The lambda1 ablation (path loss; lambda1_min 0.0125, 0.025 = row a, 0.05, inf = row b)", "",
                  *_row_table(cells, ds, abl, "main"), ""]
    pairs = paired_table(cells, ds)
    lines += ["### Per seed", "", *_seed_table(cells, ds, ds_rows), "",
              "### Paired differences (x - y per seed; FID, KID: negative = x better; confidence: positive = x "
              "better)", "", *_paired_lines(pairs),
              "### Plain statement (generated from the intervals above)", "", *_statement_lines(pairs),
              "### Sample grids (first finished seed)", ""]
    for (gds, row, which), g in grids.items():
        if gds == ds:
            lines.append(f"* row {row}{', EM at dt' if which == 'em_dt' else ''}: "
                         f"![{ds} {row}]({os.path.relpath(g, path.parent)})")
    return lines + [""]


# ------------------------------------------------------------------------------------------ command line
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, naming the argument (argparse's own message), no usage block
        raise SystemExit(f"anisotropy_study.py: {message}")


def parse_args(argv=None) -> argparse.Namespace:
    ap = _Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke level: table1's quick profile, one seed per cell")
    ap.add_argument("--datasets", nargs="+", choices=list(DATASETS), help="only these data sets")
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), help="only these rows")
    ap.add_argument("--seeds", type=int, nargs="+", help="only these seeds (of the plan's: 0-4 for a, b; 0-2 else)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes, one thread each")
    ap.add_argument("--predictor", default="em", choices=PREDICTORS,
                    help="the main sampler's predictor at the Table 1 budget (default em)")
    ap.add_argument("--workdir", default=str(ROOT / "out" / "anisotropy"),
                    help="run folders, data and classifiers (default out/anisotropy, git-ignored)")
    ap.add_argument("--out", help="markdown output (default docs/anisotropy[_quick].md)")
    ap.add_argument("--figdir", default=str(ROOT / "docs" / "figures" / "anisotropy"))
    ap.add_argument("--note", default="", help="a note on the machine for the header")
    ap.add_argument("--status", action="store_true", help="list the runs (done / resumable / not started) and stop")
    ap.add_argument("--report", action="store_true", help="write the document from the finished runs; train nothing")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"anisotropy_study.py: --jobs must be an integer >= 1, got {args.jobs}")
    top = max(len(seeds_for(r, "quick" if args.quick else "full")) for r in ROWS) - 1
    bad = [s for s in args.seeds or [] if not 0 <= s <= top]
    if bad:
        raise SystemExit(f"anisotropy_study.py: --seeds must lie in 0..{top} (the plan's seeds), got {bad}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    T1.COMMIT_AT_START = T1.commit()
    torch.set_num_threads(1)
    mode = "quick" if args.quick else "full"
    prof = dict(T1.PROFILES[mode])
    root = Path(args.workdir)
    workdir = root / mode
    settings = {"mode": mode, "predictor": args.predictor, "n_samples": T1.samples_for(prof, 16),
                "em_dt_samples": EM_DT_SAMPLES[mode], "note": args.note, "root": str(root)}
    todo = plan(prof, mode, root, args.datasets, args.rows, args.seeds)
    if not todo and not args.report:
        raise SystemExit("anisotropy_study.py: --datasets / --rows / --seeds select no run of the plan (seeds 0-4 "
                         "for rows a, b, 0-2 for the others; sharp16 has rows a, b, c, f)")
    if args.status:
        print("\n".join(data_status(root, args.datasets or DATASETS) + status_lines(todo, workdir, settings)))
        return 0
    t_start = time.perf_counter()
    failed = []
    if not args.report:
        _log_command(workdir, argv)
        for ds in sorted({t.dataset for t in todo}):
            prepare_dataset(ds, root)
        failed = run_all(todo, workdir, settings, args.jobs)
    everything = plan(prof, mode, root)
    cells = collect(everything, workdir, settings)
    ran = {k[0] for k, c in cells.items() if any(e.get("main") for e in c.values())}
    refs, priors, classifiers = {}, {}, {}
    for ds in ran:
        if not classifier_path(root, ds).is_file():
            continue
        clf = load_classifier(classifier_path(root, ds))
        refs[ds] = T1.reference_row(DATASETS[ds][1], clf, dataset_images(ds, "train"), dataset_images(ds, "test"))
        acc = clf.meta.get("accuracy_heldout", clf.meta.get("accuracy"))
        classifiers[ds] = (f"`{_shown(classifier_path(root, ds))}`, held-out accuracy {acc:.4f}"
                           + (" (shipped digits classifier)" if ds.startswith("digits") else
                              f" (trained by this script: genmodel.metrics.train_digits_classifier, "
                              f"{CLASSIFIER_RECIPE['epochs']} epochs, seed {CLASSIFIER_RECIPE['seed']}, on the "
                              "training split)"))
        if "c" in DATASETS[ds][2]:
            priors[ds] = prior_comparison(ds, prof, song_ermon_sigma_max(dataset_images(ds, "train")))
    out = Path(args.out) if args.out else ROOT / "docs" / f"anisotropy{'_quick' if args.quick else ''}.md"
    grids = write_grids(cells, workdir, Path(args.figdir), mode)
    total = time.perf_counter() - t_start
    write_doc(out, everything, cells, refs, priors, classifiers, grids, settings, prof, _commands(workdir, argv),
              total)
    raw = {"settings": settings, "profile": prof, "priors": priors, "reference": refs,
           "cells": {f"{ds}_{row}": seeds for (ds, row), seeds in cells.items()},
           "paired": {ds: paired_table(cells, ds) for ds in DATASETS}}
    out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"wrote {out} in {total / 60:.1f} min")
    if failed:
        raise SystemExit(f"anisotropy_study.py: {len(failed)} run(s) failed (the others are kept): {', '.join(failed)}")
    return 0


def _shown(p: Path) -> str:
    """A path relative to the repository when it lies inside it, else as it is."""
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def _log_command(workdir: Path, argv) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "commands.jsonl", "a") as fh:
        fh.write(json.dumps({"argv": list(argv), "commit": T1.COMMIT_AT_START,
                             "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}) + "\n")


def _commands(workdir: Path, argv) -> list:
    """The distinct commands that made runs in ``workdir`` (in order), then this one."""
    seen = []
    f = workdir / "commands.jsonl"
    if f.is_file():
        for line in f.read_text().splitlines():
            a = json.loads(line)["argv"]
            if a not in seen:
                seen.append(a)
    return seen + ([list(argv)] if list(argv) not in seen else [])


if __name__ == "__main__":
    sys.exit(main())
