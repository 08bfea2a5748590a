# ruff: noqa: E402
"""What the anisotropy study (validation/anisotropy_study.py, issue 23) runs: its constants, rows, data sets,
seeds and plan, each run's config (table1's harness with the row's process, loss and time measure), its extra
evaluations and row c's prior. Imported by name: validation/ must be on sys.path (anisotropy_study.py puts it
there, also for its spawned workers, which unpickle :class:`Task` from this module)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # genmodel, spdekit

import table1 as T1

import spdekit
from genmodel.data import load_digits
from genmodel.metrics import DEFAULT_CLASSIFIER, save_classifier, train_digits_classifier
from genmodel.priors import GaussianPrior
from genmodel.train import load_config
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



# ------------------------------------------------------------------------------------------ sampling prior
def row_prior(task: Task) -> GaussianPrior | None:
    """Row c samples from Song et al.'s prior N(0, sigma_max^2 I); the others from the model's stored one."""
    if task.row != "c":
        return None
    a2 = S.schedule_from_dict(task.cfg["process"]["alpha2"])
    c = math.sqrt(2.0 * math.log(a2.vmax / a2.vmin) / a2.T)
    return song_prior(a2.vmax / c, DATASETS[task.dataset][1])
